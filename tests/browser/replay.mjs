// Plays recordings in headless Chromium's <video>: logs in on consultd's
// page (the session cookie then authorizes the media requests), plays
// each URL, checks time advances, seeks to the middle and waits for it.
//   node replay.mjs '{"base": "...", "username": "...", "password": "...", "urls": [...]}'
import { launch } from './chromium.mjs';

const opts = JSON.parse(process.argv[2]);
const { context, close } = await launch();
const out = { videos: [] };
try {
  const page = await context.newPage();
  // consultd's own page, so that its Content-Security-Policy (media-src)
  // and its origin's address space apply to the <video> elements, as in
  // the replay view: a redirect to a recording store it does not allow
  // would fail here as it fails for users.
  await page.goto(opts.base + '/');
  const login = await page.evaluate(async ({ username, password }) => {
    const r = await fetch('/api/login', { method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ username, password }) });
    return r.status;
  }, opts);
  if (login !== 200) throw new Error('login ' + login);
  for (const url of opts.urls) {
    const v = await page.evaluate(async (url) => {
      const v = document.createElement('video');
      v.muted = true;
      document.body.appendChild(v);
      const once = (ev, ms) => new Promise((ok, no) => {
        const t = setTimeout(() => no(new Error('timeout waiting for ' + ev)), ms);
        v.addEventListener(ev, () => { clearTimeout(t); ok(); }, { once: true });
        v.addEventListener('error', () => { clearTimeout(t); no(new Error('media error ' + (v.error && v.error.message))); }, { once: true });
      });
      try {
        v.src = url;
        await once('loadedmetadata', 30000);
        await v.play();
        const t0 = v.currentTime;
        // Wait for playback to move (up to 20 s), not for a fixed time.
        for (const end = Date.now() + 20000; Date.now() < end && v.currentTime - t0 < 0.5;)
          await new Promise(ok => setTimeout(ok, 200));
        const advanced = v.currentTime - t0;
        const target = v.duration / 2;
        v.currentTime = target;
        await once('seeked', 30000);
        const seekedTo = v.currentTime;
        await new Promise(ok => setTimeout(ok, 800));
        return { url, duration: v.duration, videoWidth: v.videoWidth, advanced, seekedTo,
                 afterSeek: v.currentTime, error: v.error ? v.error.message : null };
      } catch (e) {
        // What the element was doing when it gave up: enough to tell a
        // stalled download from a demuxer that cannot find the target.
        const ranges = b => Array.from({ length: b.length }, (_, i) => [b.start(i), b.end(i)]);
        return { url, error: String(e), duration: v.duration, videoWidth: v.videoWidth,
                 currentTime: v.currentTime, seeking: v.seeking, readyState: v.readyState,
                 networkState: v.networkState, buffered: ranges(v.buffered),
                 seekable: ranges(v.seekable), paused: v.paused, ended: v.ended };
      }
    }, url);
    out.videos.push(v);
  }
} catch (e) {
  out.error = String(e && e.stack || e);
} finally {
  await close();
}
console.log(JSON.stringify(out));
