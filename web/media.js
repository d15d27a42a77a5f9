// WHIP (publish) and WHEP (receive) from the page, with reconnection.
// A Link is one direction of media with its own RTCPeerConnection; when its
// connection fails (or the server answers 503) it retries with backoff and
// reports its state through onstate, so the page can say what is going on.
'use strict';

class MediaLink {
  constructor(url, { stream = null, iceServers = [], onstate = () => {}, ontrack = () => {}, degradation = null } = {}) {
    this.url = url;
    this.iceServers = iceServers;
    this.stream = stream;      // publish when set, receive otherwise
    this.degradation = degradation; // publish: what the encoder gives up first under load
    this.onstate = onstate;
    this.ontrack = ontrack;
    this.closed = false;
    this.attempt = 0;
    this.pc = null;
    this.location = null;
  }

  async start() {
    while (!this.closed) {
      try {
        this.onstate(this.attempt ? 'reconnecting' : 'connecting');
        await this._connect();
        return;
      } catch (e) {
        if (e.fatal || this.closed) { this.onstate('failed', e.message); return; }
        this.attempt++;
        const wait = Math.min(10000, 500 * 2 ** Math.min(this.attempt, 5));
        await new Promise(ok => setTimeout(ok, e.retryAfter ? e.retryAfter * 1000 : wait));
      }
    }
  }

  async _connect() {
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', iceServers: this.iceServers });
    this.pc = pc;
    if (this.stream) {
      for (const tr of this.stream.getTracks()) {
        const tc = pc.addTransceiver(tr, { direction: 'sendonly' });
        if (this.degradation && tr.kind === 'video') {
          const p = tc.sender.getParameters();
          p.degradationPreference = this.degradation;
          tc.sender.setParameters(p).catch(() => {});
        }
      }
    } else {
      pc.addTransceiver('video', { direction: 'recvonly' });
      pc.addTransceiver('audio', { direction: 'recvonly' });
      // The server's answers carry no a=msid: build the stream ourselves.
      const ms = new MediaStream();
      pc.ontrack = e => { ms.addTrack(e.track); this.ontrack(ms); };
    }
    pc.onconnectionstatechange = () => {
      if (pc !== this.pc || this.closed) return;
      if (pc.connectionState === 'connected') { this.attempt = 0; this.onstate('connected'); }
      if (pc.connectionState === 'failed' || pc.connectionState === 'disconnected') this._retry();
    };
    await pc.setLocalDescription(await pc.createOffer());
    if (pc.iceGatheringState !== 'complete') {
      await new Promise(ok => {
        const done = () => pc.iceGatheringState === 'complete' && ok();
        pc.addEventListener('icegatheringstatechange', done);
        setTimeout(ok, 2000); // enough candidates by then; the server has all of its own
      });
    }
    const r = await fetch(this.url, { method: 'POST', headers: { 'Content-Type': 'application/sdp' },
                                      body: pc.localDescription.sdp });
    if (r.status !== 201) {
      pc.close();
      const body = await r.json().catch(() => ({}));
      const e = new Error(body.message || ('HTTP ' + r.status));
      e.fatal = r.status === 403 || r.status === 404 || r.status === 409 || r.status === 401;
      e.retryAfter = Number(r.headers.get('Retry-After')) || 0;
      throw e;
    }
    this.location = r.headers.get('Location');
    await pc.setRemoteDescription({ type: 'answer', sdp: await r.text() });
  }

  _retry() {
    if (this.retrying || this.closed) return;
    this.retrying = true;
    const old = this.pc;
    setTimeout(async () => {
      if (old) old.close();
      this.retrying = false;
      this.attempt++;
      await this.start();
    }, 1000);
  }

  async stats() {
    const out = { framesDecoded: 0, packetsReceived: 0, framesEncoded: 0 };
    if (!this.pc) return out;
    for (const s of (await this.pc.getStats()).values()) {
      if (s.type === 'inbound-rtp' && s.kind === 'video') out.framesDecoded = s.framesDecoded || 0;
      if (s.type === 'inbound-rtp') out.packetsReceived += s.packetsReceived || 0;
      if (s.type === 'outbound-rtp' && s.kind === 'video') out.framesEncoded = s.framesEncoded || 0;
    }
    return out;
  }

  async close() {
    this.closed = true;
    if (this.location) {
      await fetch(this.location, { method: 'DELETE' }).catch(() => {});
    }
    if (this.pc) this.pc.close();
  }
}
