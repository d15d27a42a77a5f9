// Media under loss: two participants, each a Chromium peer pair (publish
// over WHIP, receive the other over WHEP), through consultd, for a window
// of seconds; what Chromium's getStats says the users saw, per direction.
//   node network.mjs '{"base": "http://127.0.0.1:PORT", "cid": 1,
//                      "tokens": {"teacher": "...", "student": "..."},
//                      "warmup": 5, "seconds": 40, "p2p": false}'
// With "p2p": true the two participants connect to each other directly (the
// reference: no server on the media path, each direction crosses the
// impairment once).  Prints one JSON line: {"teacher_to_student": {...},
// "student_to_teacher": {...}}, each what the receiver saw and what the
// sender was asked for and sent, and "timeline": [[unix ms, frames decoded
// by the teacher, by the student], ...].
import { launch } from './chromium.mjs';

const opts = JSON.parse(process.argv[2]);
const PAGE = `<!doctype html><meta charset="utf-8"><title>network</title>
<video id="teacher" autoplay playsinline muted></video>
<video id="student" autoplay playsinline muted></video>
<script>
async function gathered(pc) {
  if (pc.iceGatheringState === 'complete') return;
  await new Promise(ok => pc.addEventListener('icegatheringstatechange',
    () => pc.iceGatheringState === 'complete' && ok()));
}
async function post(pc, url, token) {
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const r = await fetch(url, { method: 'POST', body: pc.localDescription.sdp,
    headers: { 'Content-Type': 'application/sdp', 'Authorization': 'Bearer ' + token } });
  const body = await r.text();
  if (r.status !== 201) throw new Error(url + ': ' + r.status + ' ' + body);
  await pc.setRemoteDescription({ type: 'answer', sdp: body });
  return { location: r.headers.get('Location'), answer: body };
}
async function camera() {
  return navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480, frameRate: 30 }, audio: true });
}
function show(pc, id) {
  pc.ontrack = e => {
    window.msid = window.msid || {};
    window.msid[id] = e.streams.length ? e.streams[0].id : '';
    const v = document.getElementById(id);
    if (!v.srcObject) v.srcObject = e.streams[0] || new MediaStream();
    if (!v.srcObject.getTracks().includes(e.track)) v.srcObject.addTrack(e.track);
  };
}
// Each participant: pub sends its camera, sub receives the other.
window.run = async ({ base, cid, tokens, p2p }) => {
  window.P = {};
  if (p2p) {
    const a = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    const b = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    for (const t of (await camera()).getTracks()) a.addTrack(t);
    for (const t of (await camera()).getTracks()) b.addTrack(t);
    show(a, 'teacher'); show(b, 'student');
    await a.setLocalDescription(await a.createOffer()); await gathered(a);
    await b.setRemoteDescription(a.localDescription);
    await b.setLocalDescription(await b.createAnswer()); await gathered(b);
    await a.setRemoteDescription(b.localDescription);
    window.P.teacher = { pub: a, sub: a };
    window.P.student = { pub: b, sub: b };
    return {};
  }
  const answers = {};
  for (const role of ['teacher', 'student']) {
    const pub = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    for (const t of (await camera()).getTracks()) pub.addTransceiver(t, { direction: 'sendonly' });
    const whip = await post(pub, base + '/whip/consultations/' + cid, tokens[role]);
    const sub = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    sub.addTransceiver('video', { direction: 'recvonly' });
    sub.addTransceiver('audio', { direction: 'recvonly' });
    show(sub, role);
    const whep = await post(sub, base + '/whep/consultations/' + cid, tokens[role]);
    window.P[role] = { pub, sub, whip, whep };
    answers[role] = { whip: whip.answer, whep: whep.answer };
  }
  return { answers };
};
// The counters of one participant: what it received, and what its own
// publisher was asked for and sent.
window.stats = async (role) => {
  const { pub, sub } = window.P[role];
  const out = { in: {}, audio: {}, out: {}, pair: {} };
  for (const s of (await sub.getStats()).values()) {
    if (s.type === 'inbound-rtp' && s.kind === 'video') out.in = s;
    if (s.type === 'inbound-rtp' && s.kind === 'audio') out.audio = s;
  }
  for (const s of (await pub.getStats()).values()) {
    if (s.type === 'outbound-rtp' && s.kind === 'video') out.out = s;
    if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') out.pair = s;
  }
  const v = document.getElementById(role);
  out.stream = (window.msid || {})[role] || ''; // the stream id in ontrack: a=msid
  out.videoWidth = v.videoWidth;
  return out;
};
window.hangup = async (tokens) => {
  for (const role of ['teacher', 'student']) {
    const p = window.P[role];
    for (const x of [p.whip, p.whep])
      if (x && x.location)
        await fetch(x.location, { method: 'DELETE', headers: { 'Authorization': 'Bearer ' + tokens[role] } });
    p.pub.close(); p.sub.close();
  }
};
</script>`;

// What a window of counters says: differences between the first and last
// reading, and the seconds in which no frame was decoded.
// FIRST and LAST are readings of the receiver (in, audio) merged with the
// sender's (out, pair): one direction.
function summary(first, last, perSecond) {
  const d = (o, k) => ((last[o] || {})[k] || 0) - ((first[o] || {})[k] || 0);
  const secs = (last.in.timestamp - first.in.timestamp) / 1000 || 1;
  return {
    fps: +(d('in', 'framesDecoded') / secs).toFixed(1),
    framesDecoded: d('in', 'framesDecoded'),
    secondsWithoutVideo: perSecond.filter(n => n === 0).length,
    freezeCount: d('in', 'freezeCount'),
    freezeSeconds: +d('in', 'totalFreezesDuration').toFixed(2),
    packetsLost: d('in', 'packetsLost'),
    nacksSent: d('in', 'nackCount'),
    plisSent: d('in', 'pliCount'),
    firsSent: d('in', 'firCount'),
    keyFramesDecoded: d('in', 'keyFramesDecoded'),
    retransmissionsReceived: d('in', 'retransmittedPacketsReceived'),
    frameWidth: last.in.frameWidth || 0,
    jitterBufferMs: last.in.jitterBufferEmittedCount ?
      +(1000 * last.in.jitterBufferDelay / last.in.jitterBufferEmittedCount).toFixed(1) : 0,
    audioConcealedPct: d('audio', 'totalSamplesReceived') ?
      +(100 * d('audio', 'concealedSamples') / d('audio', 'totalSamplesReceived')).toFixed(1) : 0,
    audioPackets: d('audio', 'packetsReceived'),
    publisher: {
      nacksReceived: d('out', 'nackCount'),
      plisReceived: d('out', 'pliCount'),
      firsReceived: d('out', 'firCount'),
      retransmissionsSent: d('out', 'retransmittedPacketsSent'),
      keyFramesEncoded: d('out', 'keyFramesEncoded'),
      kbps: +(8 * d('out', 'bytesSent') / secs / 1000).toFixed(0),
      targetKbps: +((last.out.targetBitrate || 0) / 1000).toFixed(0),
      availableOutgoingKbps: +((last.pair.availableOutgoingBitrate || 0) / 1000).toFixed(0),
      qualityLimitation: last.out.qualityLimitationReason || '',
      frameWidth: last.out.frameWidth || 0,
    },
    stream: last.stream,
  };
}

// The fake camera's default is 20 frames a second; a webcam's is 30.
const { context, close } = await launch(['--use-fake-device-for-media-stream=fps=30']);
let out = {};
try {
  const page = await context.newPage();
  await page.route(opts.base + '/__network', r => r.fulfill({ body: PAGE, contentType: 'text/html' }));
  await page.goto(opts.base + '/__network');
  out = await page.evaluate(o => window.run(o), opts);
  await page.waitForTimeout((opts.warmup || 5) * 1000);
  const roles = ['teacher', 'student'];
  const first = {}, last = {}, prev = {}, perSecond = { teacher: [], student: [] };
  for (const r of roles) first[r] = prev[r] = await page.evaluate(x => window.stats(x), r);
  console.log('WINDOW ' + Date.now()); // the caller may time an outage from here
  out.timeline = [];
  const start = Date.now();
  let tick = start;
  while (Date.now() - start < opts.seconds * 1000) {
    await page.waitForTimeout(250);
    const row = [Date.now()];
    for (const r of roles) {
      last[r] = await page.evaluate(x => window.stats(x), r);
      row.push(last[r].in.framesDecoded || 0);
    }
    out.timeline.push(row);
    if (Date.now() - tick >= 1000) {
      tick += 1000;
      for (const r of roles) {
        perSecond[r].push((last[r].in.framesDecoded || 0) - (prev[r].in.framesDecoded || 0));
        prev[r] = last[r];
      }
    }
  }
  // A direction: what the receiver got, what the sender was asked for.
  const dir = (from, to, x) => ({ in: x[to].in, audio: x[to].audio, stream: x[to].stream,
                                   out: x[from].out, pair: x[from].pair });
  out.teacher_to_student = summary(dir('teacher', 'student', first), dir('teacher', 'student', last),
                                   perSecond.student);
  out.student_to_teacher = summary(dir('student', 'teacher', first), dir('student', 'teacher', last),
                                   perSecond.teacher);
  if (!opts.p2p) await page.evaluate(t => window.hangup(t), opts.tokens);
} catch (e) {
  out.error = String(e && e.stack || e);
} finally {
  await close();
}
console.log(JSON.stringify(out));
