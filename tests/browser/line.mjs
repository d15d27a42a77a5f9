// The waiting line through the pages: three students line up behind a busy
// teacher and watch their places change live; one leaves; the teacher's
// consultation ends (opts.endUrl, called by the test), the first is
// offered a consultation, the teacher's console marks it "from your line",
// and accepting it moves the student to the call.
//   node line.mjs '{"base": "...", "teacher": "Kim Minji"}'
// The test (test_e2e.py) made the teacher busy and ends the consultation
// when this prints "READY" on a line of its own, then writes "GO" to stdin.
import readline from 'node:readline';
import { launchBrowser, login, teacherCard } from './chromium.mjs';

const opts = JSON.parse(process.argv[2]);
const out = { places: {} };
const rl = readline.createInterface({ input: process.stdin });
const lines = rl[Symbol.asyncIterator]();
const { browser, user } = await launchBrowser();
const place = async p => Number(await teacherCard(p, opts.teacher).locator('.line-place').getAttribute('data-position'));
try {
  const students = {};
  for (const u of ['student2', 'student3', 'student4']) {
    const p = await (await user()).newPage();
    p.on('pageerror', e => (out.pageErrors ||= []).push(`${u}: ${e.message}`));
    await login(p, opts.base, u);
    students[u] = p;
  }
  const teacher = await (await user()).newPage();
  teacher.on('pageerror', e => (out.pageErrors ||= []).push(`teacher: ${e.message}`));
  await login(teacher, opts.base, 'teacher1');
  // One after the other: the order of the line is the order of joining.
  for (const [k, u] of ['student2', 'student3', 'student4'].entries()) {
    const card = teacherCard(students[u], opts.teacher);
    await card.locator('button.line-join').click();
    await card.locator(`.line-place[data-position="${k + 1}"]`).waitFor({ timeout: 20000 });
  }
  for (const u of Object.keys(students)) out.places[u] = await place(students[u]);
  out.placeText = await teacherCard(students.student4, opts.teacher).locator('.line-place').textContent();
  await teacher.locator('#line-length[data-length="3"]').waitFor({ timeout: 20000 });
  // The second leaves: the third moves up without a reload.
  await teacherCard(students.student3, opts.teacher).locator('button.line-leave').click();
  await teacherCard(students.student4, opts.teacher).locator('.line-place[data-position="2"]').waitFor({ timeout: 20000 });
  out.afterLeave = { student2: await place(students.student2), student4: await place(students.student4),
    student3Joins: await teacherCard(students.student3, opts.teacher).locator('button.line-join').count() };
  await teacher.locator('#line-length[data-length="2"]').waitFor({ timeout: 20000 });
  out.teacherLine = await teacher.locator('#line-students li').allTextContents();
  // The teacher's consultation ends: the first in line is offered one.
  console.log('READY');
  await lines.next();
  const req = teacher.locator('#incoming .card', { has: teacher.locator('.from-line') });
  await req.waitFor({ timeout: 20000 });
  out.offer = await req.textContent();
  await teacherCard(students.student4, opts.teacher).locator('.line-place[data-position="1"]').waitFor({ timeout: 20000 });
  out.toast = await students.student2.locator('.toast', { hasText: 'Your turn' }).first().textContent({ timeout: 20000 });
  await req.locator('button.accept').click();
  await students.student2.waitForURL(/#\/call\/\d+$/, { timeout: 20000 });
  await teacher.waitForURL(/#\/call\/\d+$/, { timeout: 20000 });
  out.studentCall = students.student2.url().split('#')[1];
  out.teacherCall = teacher.url().split('#')[1];
} catch (e) {
  out.error = String(e && e.stack || e);
} finally {
  await browser.close();
  rl.close();
}
console.log(JSON.stringify(out));
