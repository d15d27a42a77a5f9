// Screen sharing through the pages: the teacher shares a screen (a canvas
// stream standing in for getDisplayMedia, which headless Chromium cannot
// pick a screen for), the student's page shows it large with both cameras
// small, at full resolution; a reload mid-share shows it again; the
// browser's own stop ends it for both; the replay page plays the screen's
// recording on the same timeline as the cameras.
//   node screen.mjs '{"base": "...", "consultation": 7}'
// Prints one JSON line with what each page saw.
import { launchBrowser, login } from './chromium.mjs';

const opts = JSON.parse(process.argv[2]);
const out = {};
const id = opts.consultation;

// getDisplayMedia gives a 1280x720 canvas with text on it, redrawn at
// 15 frames a second (a clock and a moving bar, so that frames differ).
function fakeScreen() {
  navigator.mediaDevices.getDisplayMedia = async () => {
    const c = document.createElement('canvas');
    c.width = 1280; c.height = 720;
    const g = c.getContext('2d');
    let n = 0;
    setInterval(() => {
      g.fillStyle = '#fff'; g.fillRect(0, 0, 1280, 720);
      g.fillStyle = '#000'; g.font = '28px monospace';
      for (let y = 40; y < 700; y += 36) g.fillText(`slide line ${y} frame ${n}`, 20, y);
      g.fillStyle = '#c00'; g.fillRect((n * 8) % 1280, 690, 60, 20);
      n++;
    }, 66);
    window.__screen = c.captureStream(15);
    return window.__screen;
  };
}

const { browser, user } = await launchBrowser();
const pages = {};
try {
  const tctx = await user(), sctx = await user();
  await tctx.addInitScript(fakeScreen);
  const teacher = await tctx.newPage(), student = await sctx.newPage();
  Object.assign(pages, { teacher, student });
  for (const [who, p] of [['student', student], ['teacher', teacher]])
    p.on('pageerror', e => (out.pageErrors ||= []).push(`${who}: ${e.message}`));
  await login(teacher, opts.base, 'teacher1');
  await login(student, opts.base, 'student1');
  await teacher.goto(`${opts.base}/#/call/${id}`);
  await student.goto(`${opts.base}/#/call/${id}`);
  for (const p of [teacher, student])
    await p.waitForFunction(() => document.getElementById('remote-video')?.videoWidth > 0, null, { timeout: 45000 });

  await teacher.click('#share-screen');
  out.teacherButton = await teacher.locator('#share-screen').getAttribute('aria-pressed');
  out.contentHint = await teacher.evaluate(() => window.__screen.getVideoTracks()[0].contentHint);
  // The student's page: the screen large, at the resolution it was shared.
  const seen = async () => {
    await student.locator('.call.sharing').waitFor({ timeout: 45000 });
    // Polled from here (no fixed wait): frames keep coming at full width.
    const frames = () => student.evaluate(async () => {
      const sub = window.consultdCall.screenSub;
      if (!sub || !sub.pc) return 0;
      for (const s of (await sub.pc.getStats()).values())
        if (s.type === 'inbound-rtp' && s.kind === 'video' && s.frameWidth === 1280) return s.framesDecoded;
      return 0;
    });
    for (const end = Date.now() + 45000; Date.now() < end && await frames() <= 20;)
      await student.waitForTimeout(250);
    return student.evaluate(async () => {
      const v = document.getElementById('remote-screen'), cam = document.getElementById('remote-video');
      const r = x => x.getBoundingClientRect();
      let stats = {};
      for (const s of (await window.consultdCall.screenSub.pc.getStats()).values())
        if (s.type === 'inbound-rtp' && s.kind === 'video')
          stats = { frames: s.framesDecoded, width: s.frameWidth, height: s.frameHeight, freezes: s.freezeCount };
      return { width: v.videoWidth, height: v.videoHeight, screenBox: r(v).width, cameraBox: r(cam).width,
               cameraPlaying: cam.videoWidth > 0 && !cam.paused, stats };
    });
  };
  out.studentSaw = await seen();
  // Opened mid-share (a reload): the page learns of the screen from the
  // consultation and shows it again.
  await student.reload();
  out.afterReload = await seen();

  // The browser's own "Stop sharing" ends the track: it ends for both.
  await teacher.evaluate(() => window.__screen.getVideoTracks()[0].dispatchEvent(new Event('ended')));
  await student.waitForFunction(() => !document.querySelector('.call.sharing') && !window.consultdCall.screenSub,
    null, { timeout: 30000 });
  out.stoppedForStudent = true;
  out.teacherButtonAfter = await teacher.locator('#share-screen').getAttribute('aria-pressed');
  await teacher.waitForTimeout(2000); // the cameras go on a little after the screen
  await teacher.click('#end-call');
  await teacher.waitForURL(/#\/$/);
  await student.waitForURL(/#\/mypage$/, { timeout: 20000 });

  // The replay: the screen's file with both cameras, on one timeline.
  await student.waitForFunction(async id => {
    const r = await (await fetch(`/api/consultations/${id}/recordings`)).json();
    return r.recordings.filter(x => x.role !== 'combined' && x.state === 'ready').length >= 3;
  }, id, { timeout: 90000, polling: 500 });
  // (The student's reload was a rejoin: their camera has two files.)
  await student.goto(`${opts.base}/#/replay/${id}`);
  await student.waitForFunction(() => window.consultdReplay && window.consultdReplay.vids.length >= 3 &&
    window.consultdReplay.vids.every(v => v.readyState >= 1), null, { timeout: 30000 });
  out.replayOrder = await student.evaluate(() => window.consultdReplay.vids.map(v => v.dataset.stream));
  const scr = await student.evaluate(() => { const v = window.consultdReplay.vids[0]; return { offset: v._offset, duration: v._duration }; });
  // Seek into the screen's time and play: it plays there, in step.
  await student.evaluate(t => window.consultdReplay.seek(t), scr.offset + scr.duration / 2);
  await student.evaluate(() => window.consultdReplay.play());
  await student.waitForFunction(() => { const v = window.consultdReplay.vids[0]; return !v.paused && v.videoWidth > 0 && v.currentTime > 0; },
    null, { timeout: 30000 }).catch(() => {});
  out.replay = await student.evaluate(() => window.consultdReplay.vids.map(v => ({
    stream: v.dataset.stream, role: v.dataset.role, w: v.videoWidth, at: v.currentTime + v._offset,
    playing: !v.paused, err: v.error && v.error.message })));
  out.replayScreen = scr;
  out.replayCaption = await student.locator('.replay figure.screen figcaption').textContent();
} catch (e) {
  out.error = String(e && e.stack || e);
  for (const [who, p] of Object.entries(pages))
    out[who + 'Page'] = await p.evaluate(() => location.hash + ' ' + document.getElementById('view')?.innerHTML.slice(0, 1500)).catch(x => String(x));
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
