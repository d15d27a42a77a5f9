#!/bin/sh
# Makes the pre-encoded clip the load generator sends: VP8 640x480@30 at
# about 600 kbps (a keyframe a second) plus Opus, 90 s, WebM.  Made once; the generator pays
# no encoding cost.
set -eu
out="${1:-bench/media/clip.webm}"
[ -s "$out" ] && exit 0
mkdir -p "$(dirname "$out")"
gst-launch-1.0 -q \
  videotestsrc num-buffers=2700 pattern=smpte ! video/x-raw,width=640,height=480,framerate=30/1 ! \
  timeoverlay ! vp8enc target-bitrate=600000 deadline=1 cpu-used=8 keyframe-max-dist=30 ! queue ! mux. \
  audiotestsrc num-buffers=4219 samplesperbuffer=1024 wave=sine ! audio/x-raw,rate=48000,channels=2 ! \
  audioconvert ! opusenc bitrate=32000 ! queue ! mux. \
  webmmux name=mux ! filesink location="$out.tmp.$$"
# Two runs at once (the two bench-smoke tests of a fresh clone) each write
# their own file; the rename is atomic, the last one wins.
mv "$out.tmp.$$" "$out"
