#!/usr/bin/python3
"""Writes the seed corpus of fuzz-worker (serialized a{sv} messages as a
worker sends them).  Needs Debian's python3-gi: /usr/bin/python3
tests/fuzz/seeds/worker_seeds.py tests/fuzz/corpus/worker"""
import os, sys
from gi.repository import GLib
out = sys.argv[1]
def v(d):
    return GLib.Variant('a{sv}', d)
S=lambda s: GLib.Variant('s', s)
X=lambda x: GLib.Variant('x', x)
U=lambda x: GLib.Variant('u', x)
T=lambda x: GLib.Variant('t', x)
msgs = [
 {'op':S('ready'),'pid':X(1234)},
 {'op':S('stats'),'packets_in':T(10),'packets_out':T(9),'rooms':U(1),'sessions':U(2)},
 {'op':S('answer'),'req':U(1),'session':S('abc'),'sdp':S('v=0\r\n')},
 {'op':S('error'),'req':U(2),'session':S('abc'),'code':S('bad_offer'),'message':S('no')},
 {'op':S('joined'),'consultation':X(1),'role':S('teacher'),'session':S('abc')},
 {'op':S('left'),'consultation':X(1),'role':S('student'),'session':S('abc'),'reason':S('media-timeout')},
 {'op':S('recording'),'consultation':X(1),'role':S('teacher'),'file':S('teacher-1.webm'),'state':S('recording'),'started_at':X(1)},
 {'op':S('recording'),'consultation':X(1),'role':S('teacher'),'file':S('../../etc/passwd'),'state':S('ready'),'duration_ms':X(5),'size':X(10)},
 {'op':S('recording'),'consultation':X(1),'role':S('combined'),'file':S('combined.webm'),'state':S('failed'),'reason':S('disk full')},
 {'op':U(5)},
 # Found by fuzz-worker (UBSan): a start time that overflowed the offset.
 {'op':S('recording'),'consultation':X(1),'role':S('teacher'),'file':S('t.webm'),'state':S('recording'),'started_at':X(-9223372036854775807)},
 {'op':S('recording'),'consultation':X(1),'role':S('teacher'),'file':S('u.webm'),'state':S('ready'),'duration_ms':X(-5),'size':X(-1)},
 {'op':S('stats'),'rooms':S('wrong type')},
]
os.makedirs(out, exist_ok=True)
for i,m in enumerate(msgs):
    open(os.path.join(out,'seed-%02d'%i),'wb').write(v(m).get_data_as_bytes().get_data())
open(os.path.join(out,'seed-junk'),'wb').write(b'\x00\x01garbage\xff')
