// WHIP/WHEP interop: headless Chromium (libwebrtc) publishes its fake camera
// and microphone over WHIP and receives the other participant over WHEP,
// from a plain JavaScript page on consultd's origin.
//   node interop.mjs '{"base": "http://127.0.0.1:PORT", "cid": 1, "token": "...",
//                      "seconds": 12, "minFrames": 20}'
// Prints one JSON line: {"whip": 201, "whep": 201, "framesDecoded": N, ...}.
import { launch } from './chromium.mjs';

const opts = JSON.parse(process.argv[2]);
const PAGE = `<!doctype html><meta charset="utf-8"><title>interop</title>
<video id="remote" autoplay playsinline muted></video>
<script>
async function gathered(pc) {
  if (pc.iceGatheringState === 'complete') return;
  await new Promise(ok => pc.addEventListener('icegatheringstatechange',
    () => pc.iceGatheringState === 'complete' && ok()));
}
async function exchange(pc, url, token) {
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const r = await fetch(url, { method: 'POST', body: pc.localDescription.sdp,
    headers: { 'Content-Type': 'application/sdp', 'Authorization': 'Bearer ' + token } });
  const body = await r.text();
  if (r.status === 201) await pc.setRemoteDescription({ type: 'answer', sdp: body });
  return { status: r.status, location: r.headers.get('Location'), body: r.status === 201 ? '' : body };
}
window.run = async ({ base, cid, token, relayOnly }) => {
  const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240 }, audio: true });
  // relayOnly: only TURN relay candidates, with the servers and the minted
  // credential from /api/ice-servers.
  const cfg = { bundlePolicy: 'max-bundle' };
  if (relayOnly) {
    const r = await fetch(base + '/api/ice-servers', { headers: { 'Authorization': 'Bearer ' + token } });
    cfg.iceServers = (await r.json()).ice_servers;
    cfg.iceTransportPolicy = 'relay';
  }
  const pub = new RTCPeerConnection(cfg);
  for (const t of stream.getTracks()) pub.addTransceiver(t, { direction: 'sendonly' });
  const whip = await exchange(pub, base + '/whip/consultations/' + cid, token);
  const sub = new RTCPeerConnection(cfg);
  sub.addTransceiver('video', { direction: 'recvonly' });
  sub.addTransceiver('audio', { direction: 'recvonly' });
  // webrtcbin's answers carry no a=msid: build the stream ourselves.
  const ms = new MediaStream();
  sub.ontrack = e => { ms.addTrack(e.track); document.getElementById('remote').srcObject = ms; };
  const whep = await exchange(sub, base + '/whep/consultations/' + cid, token);
  window.pcs = { pub, sub, whip, whep };
  return { whip: whip.status, whep: whep.status, whipError: whip.body, whepError: whep.body };
};
window.stats = async () => {
  let framesDecoded = 0, audioPackets = 0, framesSent = 0;
  for (const s of (await window.pcs.sub.getStats()).values()) {
    if (s.type === 'inbound-rtp' && s.kind === 'video') framesDecoded = s.framesDecoded || 0;
    if (s.type === 'inbound-rtp' && s.kind === 'audio') audioPackets = s.packetsReceived || 0;
  }
  for (const s of (await window.pcs.pub.getStats()).values())
    if (s.type === 'outbound-rtp' && s.kind === 'video') framesSent = s.framesEncoded || 0;
  // The local candidate type of each connection's selected pair.
  const selected = async pc => {
    const st = await pc.getStats();
    for (const s of st.values())
      if (s.type === 'transport' && s.selectedCandidatePairId) {
        const pair = st.get(s.selectedCandidatePairId);
        return pair && st.get(pair.localCandidateId) ? st.get(pair.localCandidateId).candidateType : '';
      }
    return '';
  };
  const v = document.getElementById('remote');
  return { framesDecoded, audioPackets, framesSent, videoWidth: v.videoWidth, currentTime: v.currentTime,
           pubCandidate: await selected(window.pcs.pub), subCandidate: await selected(window.pcs.sub) };
};
window.hangup = async (token) => {
  for (const x of [window.pcs.whip, window.pcs.whep])
    if (x.location) await fetch(x.location, { method: 'DELETE', headers: { 'Authorization': 'Bearer ' + token } });
  window.pcs.pub.close(); window.pcs.sub.close();
};
</script>`;

const { context, close } = await launch();
let out = {};
try {
  const page = await context.newPage();
  await page.route(opts.base + '/__interop', r => r.fulfill({ body: PAGE, contentType: 'text/html' }));
  await page.goto(opts.base + '/__interop');
  out = await page.evaluate(o => window.run(o), opts);
  const deadline = Date.now() + opts.seconds * 1000;
  let st = {};
  while (Date.now() < deadline) {
    st = await page.evaluate(() => window.stats());
    await page.waitForTimeout(250);
  }
  Object.assign(out, st);
  await page.evaluate(t => window.hangup(t), opts.token);
} catch (e) {
  out.error = String(e && e.stack || e);
} finally {
  await close();
}
console.log(JSON.stringify(out));
