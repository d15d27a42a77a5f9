// A consultation through the pages behind the entry point (haproxy) of
// several nodes: the page's WHIP/WHEP POSTs go to whichever node haproxy
// picks and follow the 307 to the consultation's node (fetch keeps the
// method, the body and the cookie on a same-origin redirect).
//   node cluster.mjs '{"base": "http://127.0.0.1:HAPROXY"}'
// Prints one JSON line: both sides' media and where their sessions live.
import { launchBrowser, login as signIn, mediaFlowing, teacherCard } from './chromium.mjs';

const opts = JSON.parse(process.argv[2]);
const out = {};
const login = (page, user) => signIn(page, opts.base, user);
const card = teacherCard;

const { browser, user } = await launchBrowser();
try {
  const student = await (await user()).newPage(), teacher = await (await user()).newPage();
  for (const [who, p] of [['student', student], ['teacher', teacher]])
    p.on('pageerror', e => (out.pageErrors ||= []).push(`${who}: ${e.message}`));
  await login(teacher, 'teacher1');
  await teacher.locator('#presence-state .status.online').waitFor({ timeout: 20000 });
  await login(student, 'student1');
  await card(student, 'Kim Minji').locator('button.request').click();
  await student.locator('#request-msg', { hasText: 'Request sent' }).waitFor({ timeout: 20000 });
  await teacher.locator('#incoming button.accept').waitFor({ timeout: 20000 });
  await teacher.click('#incoming button.accept');
  await teacher.waitForURL(/#\/call\/\d+$/);
  await student.waitForURL(/#\/call\/\d+$/, { timeout: 20000 });
  out.consultation = Number(teacher.url().split('/').pop());
  for (const [who, p] of [['teacher', teacher], ['student', student]]) {
    await p.waitForFunction(() => document.getElementById('remote-video')?.videoWidth > 0, null, { timeout: 45000 });
    out[who + 'Media'] = await mediaFlowing(p);
    out[who + 'Locations'] = await p.evaluate(() => [window.consultdCall.pub?.location, window.consultdCall.sub?.location]);
  }
  await teacher.click('#end-call');
  await teacher.waitForURL(/#\/$/);
} catch (e) {
  out.error = String(e && e.stack || e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
