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
  // The chat: a message with markup and a link from the student shows
  // live on the teacher's page as text (the link a link, nothing else
  // markup); the teacher answers in Korean.
  const hostile = 'see <b id="chat-xss">this</b> https://example.com/notes?a=1 <img src=x onerror="window.__xss=1">';
  await student.fill('#chat-input', hostile);
  await student.click('#chat-send');
  const tItem = teacher.locator('#chat-list li.chat-item.student');
  await tItem.waitFor({ timeout: 20000 });
  out.chatTeacherSaw = await tItem.locator('.chat-body').textContent();
  out.chatMarkup = await teacher.evaluate(() => ({
    bold: document.getElementById('chat-xss') !== null, img: document.querySelector('#chat-list img') !== null,
    ran: window.__xss !== undefined,
    links: [...document.querySelectorAll('#chat-list a')].map(a => ({ href: a.href, rel: a.rel, text: a.textContent })) }));
  await teacher.waitForTimeout(1500); // a second message later in the recording
  await teacher.fill('#chat-input', '안녕하세요, 네 알겠습니다');
  await teacher.press('#chat-input', 'Enter');
  await student.locator('#chat-list li.chat-item.teacher').waitFor({ timeout: 20000 });
  out.chatStudentSaw = await student.locator('#chat-list li .chat-body').allTextContents();
  await shot(student, 'student-chat');
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
  // The my page is a read model fed by events; the replay link is there
  // (the conversation); wait for the recordings too.
  await row.locator('a.replay-link').waitFor({ timeout: 60000 });
  await student.waitForFunction(async id => {
    const r = await fetch('/api/mypage');
    const c = (await r.json()).consultations.find(x => x.consultation_id === id);
    return c && c.recordings.length >= 2;
  }, out.consultation, { timeout: 60000, polling: 500 });
  await student.reload();
  await row.locator('a.replay-link').waitFor({ timeout: 20000 });
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
  // A seek shorter than the drift the player tolerates (0.5 s) still
  // moves the timeline: 0.35 s past where the videos are now.
  out.smallSeek = await student.evaluate(async () => {
    const r = window.consultdReplay;
    const v = r.vids.find(x => !x.paused) || r.vids[0];
    const target = v.currentTime + v._offset + 0.35;
    r.seek(target);
    for (let i = 0; i < 10; i++) await new Promise(ok => requestAnimationFrame(ok));
    return { target, timeline: Number(document.getElementById('timeline').value) };
  });
  await shot(student, 'student-replay');
  // The conversation on the replay page, each message at its moment: a
  // click moves the timeline there.
  await student.locator('#chat-list li.chat-item').nth(1).waitFor({ timeout: 20000 });
  out.replayChat = await student.evaluate(() => [...document.querySelectorAll('#chat-list li')].map(li => ({
    offset: Number(li.dataset.offset), text: li.querySelector('.chat-body').textContent,
    button: li.querySelector('button.chat-seek') !== null })));
  await student.locator('#chat-list li.chat-item.teacher button.chat-seek').click();
  out.replayChatSeek = await student.evaluate(() => Number(document.getElementById('timeline').value));
  out.replayTotal = await student.evaluate(() => window.consultdReplay.total);
  // After a reload, the conversation is still there.
  await student.reload();
  await student.locator('#chat-list li.chat-item').nth(1).waitFor({ timeout: 20000 });
  out.chatAfterReload = await student.locator('#chat-list li .chat-body').allTextContents();

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
