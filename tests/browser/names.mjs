// Hostile display names on every page that shows them: the teacher's name
// on the student's list and in the "online" notification, the student's
// name in the teacher's incoming requests, both in the header, all of them
// on the admin page.  Each must show as the literal text and never become
// markup or run.
//   node names.mjs '{"base": "...", "teacherName": "...", "studentName": "...",
//                    "teacher": "username", "student": "username"}'
// Prints one JSON line: for each page, whether the names were there as text,
// and whether anything ran or any element they describe exists.
import { launchBrowser, login as signIn } from './chromium.mjs';

const opts = JSON.parse(process.argv[2]);
const out = { pages: {} };

const login = (page, user, password = opts.password) => signIn(page, opts.base, user, password);

// What the page shows for NAMES, and whether the names' markup got in.
async function check(page, key, names) {
  await page.waitForFunction(ns => ns.every(n => document.body.innerText.includes(n)), names,
    { timeout: 20000 }).catch(() => {});
  out.pages[key] = await page.evaluate(ns => ({
    shown: ns.map(n => document.body.innerText.includes(n)),
    ran: window.__xss !== undefined,
    injected: document.querySelectorAll('#view img, #view script, #view b, #view iframe, #toasts img, #toasts b, #who img, #who b').length,
  }), names);
}

const { browser, user } = await launchBrowser();
const card = page => page.locator('article.teacher', { has: page.locator('h3', { hasText: opts.teacherName }) });
try {
  const tctx = await user(), sctx = await user(), actx = await user();
  const teacher = await tctx.newPage(), student = await sctx.newPage(), admin = await actx.newPage();
  for (const [who, p] of [['teacher', teacher], ['student', student], ['admin', admin]])
    p.on('pageerror', e => (out.pageErrors ||= []).push(`${who}: ${e.message}`));

  await login(student, opts.student);
  await check(student, 'studentList', [opts.teacherName, opts.studentName]);
  await card(student).locator('button.fav').click();
  await card(student).locator('button.fav[aria-pressed=true]').waitFor();

  await login(teacher, opts.teacher); // opening the console is going online
  await student.locator('.toast').first().waitFor({ timeout: 20000 });
  await check(student, 'studentNotified', [opts.teacherName]);
  await card(student).locator('button.request').click();
  await teacher.locator('#incoming button.accept').waitFor({ timeout: 20000 });
  await check(teacher, 'teacherIncoming', [opts.teacherName, opts.studentName]);

  await login(admin, 'admin', 'demo');
  await admin.locator('td', { hasText: opts.student }).first().waitFor({ timeout: 20000 });
  await check(admin, 'adminUsers', [opts.teacherName, opts.studentName]);
} catch (e) {
  out.error = String(e && e.stack || e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
