// End to end through the pages: teacher and student in separate browser
// contexts, real camera/microphone fakes, real consultd, real recording.
//   node e2e.mjs '{"base": "...", "artifacts": "dir", "busyTeacher": "Lee Junho"}'
// Prints one JSON line with what each step saw; a screenshot of each step
// goes to ARTIFACTS.
import fs from 'node:fs';
import path from 'node:path';
import { launchBrowser, login as signIn, mediaFlowing, teacherCard } from './chromium.mjs';

const opts = JSON.parse(process.argv[2]);
fs.mkdirSync(opts.artifacts, { recursive: true });
const out = { steps: [] };
let n = 0;
async function shot(page, name) {
  n++;
  await page.screenshot({ path: path.join(opts.artifacts, `${String(n).padStart(2, '0')}-${name}.png`), fullPage: true });
  out.steps.push(name);
}
const login = (page, user) => signIn(page, opts.base, user);
const card = teacherCard;

const { browser, user } = await launchBrowser();
try {
  const sctx = await user(), tctx = await user();
  const student = await sctx.newPage(), teacher = await tctx.newPage();
  for (const [who, p] of [['student', student], ['teacher', teacher]])
    p.on('pageerror', e => (out.pageErrors ||= []).push(`${who}: ${e.message}`));

  await login(student, 'student1');
  await card(student, 'Kim Minji').locator('button.fav').click();
  await card(student, 'Kim Minji').locator('button.fav[aria-pressed=true]').waitFor();
  // The intro holds markup and script: it must show as text and never run.
  out.introText = await card(student, 'Kim Minji').locator('.intro').textContent();
  out.introRan = await student.evaluate(() => window.__xss !== undefined ||
    document.querySelector('article.teacher img') !== null);
  await shot(student, 'student-favorited');

  await login(teacher, 'teacher1');
  await teacher.locator('#presence-state .status.online').waitFor({ timeout: 20000 });
  await shot(teacher, 'teacher-online');
  const note = student.locator('.toast', { hasText: 'Kim Minji' });
  await note.waitFor({ timeout: 20000 });
  out.notification = await note.textContent();
  await shot(student, 'student-notified');

  await card(student, 'Kim Minji').locator('button.request').click();
  await student.locator('#request-msg', { hasText: 'Request sent' }).waitFor();
  await shot(student, 'student-requested');

  await teacher.locator('#incoming button.accept').waitFor({ timeout: 20000 });
  await shot(teacher, 'teacher-incoming');
  await teacher.click('#incoming button.accept');
  await teacher.waitForURL(/#\/call\/\d+$/);
  await student.waitForURL(/#\/call\/\d+$/, { timeout: 20000 });
  out.consultation = Number(teacher.url().split('/').pop());

  for (const [who, p] of [['teacher', teacher], ['student', student]]) {
    await p.waitForFunction(() => document.getElementById('remote-video')?.videoWidth > 0, null, { timeout: 45000 });
    out[who + 'Media'] = await mediaFlowing(p);
    await shot(p, `${who}-in-call`);
  }
  // Let the recording cover a few seconds.
  await teacher.waitForTimeout(3000);
  await teacher.click('#end-call');
  await teacher.waitForURL(/#\/$/);
  await teacher.locator('#my-count[data-count="1"]').waitFor({ timeout: 20000 });
  await teacher.locator('#presence-state .status.online').waitFor({ timeout: 20000 });
  out.teacherAfter = await teacher.locator('#presence-state').textContent();
  await shot(teacher, 'teacher-available-again');

  await student.waitForURL(/#\/mypage$/, { timeout: 20000 });
  const row = student.locator(`tr[data-consultation="${out.consultation}"]`);
  await row.waitFor({ timeout: 20000 });
  // The my page is a read model fed by events; the replay link appears once
  // the recordings are ready.
  await row.locator('a.replay-link').waitFor({ timeout: 60000 });
  out.mypageRow = await row.textContent();
  await shot(student, 'student-mypage');

  await row.locator('a.replay-link').click();
  await student.waitForFunction(() => window.consultdReplay && window.consultdReplay.vids.length === 2 &&
    window.consultdReplay.vids.every(v => v.readyState >= 1), null, { timeout: 30000 });
  await student.evaluate(() => window.consultdReplay.play());
  await student.waitForFunction(() => window.consultdReplay.vids.every(v => v.currentTime > 0.5),
    null, { timeout: 30000 }).catch(() => {});
  out.replayPlaying = await student.evaluate(() => window.consultdReplay.vids.map(v => ({ t: v.currentTime, w: v.videoWidth, err: v.error && v.error.message })));
  const mid = await student.evaluate(() => window.consultdReplay.total / 2);
  await student.evaluate(m => window.consultdReplay.seek(m), mid);
  await student.waitForFunction(m => window.consultdReplay.vids.every(v => !v.seeking &&
    v.currentTime + v._offset >= m - 0.5 && v.currentTime + v._offset <= m + 2.5), mid,
    { timeout: 30000 }).catch(() => {});
  out.replaySeek = { mid, at: await student.evaluate(() => window.consultdReplay.vids.map(v => v.currentTime + v._offset)) };
  await shot(student, 'student-replay');

  // Another student may not open this replay.
  const octx = await user();
  const other = await octx.newPage();
  await login(other, 'student2');
  await other.locator('#teachers').waitFor();
  await other.goto(`${opts.base}/#/replay/${out.consultation}`);
  await other.locator('#replay-error').waitFor({ timeout: 15000 });
  out.otherReplay = await other.locator('#replay-error').textContent();
  await shot(other, 'other-student-replay-refused');

  // A busy teacher: the page says so.
  await student.goto(opts.base + '/#/');
  await card(student, opts.busyTeacher).locator('button.request').click();
  await student.locator('#request-msg', { hasText: 'busy' }).waitFor({ timeout: 15000 });
  out.busyMessage = await student.locator('#request-msg').textContent();
  await shot(student, 'student-busy-message');

  // Korean labels.
  await student.selectOption('#lang', 'ko');
  await student.locator('h1', { hasText: '선생님' }).waitFor();
  await shot(student, 'student-korean');
} catch (e) {
  out.error = String(e && e.stack || e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
