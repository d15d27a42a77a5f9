// A consultation through the pages behind the entry point (haproxy) of
// several nodes: the page's WHIP/WHEP POSTs go to whichever node haproxy
// picks and follow the 307 to the consultation's node (fetch keeps the
// method, the body and the cookie on a same-origin redirect).
//   node cluster.mjs '{"base": "http://127.0.0.1:HAPROXY"[, "failover": true]}'
// Prints one JSON line: both sides' media and where their sessions live.
// With failover: once media flows it prints "READY" on a line of its own
// and waits for a line on stdin (the test kills the consultation's node
// meanwhile); then both pages must get media again on their own, through
// the entry point, without anyone touching them.
import readline from 'node:readline';
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
  if (opts.failover) {
    const rl = readline.createInterface({ input: process.stdin });
    console.log('READY');
    await rl[Symbol.asyncIterator]().next();
    rl.close();
    const t0 = Date.now();
    for (const [who, p] of [['teacher', teacher], ['student', student]]) {
      const [pub0, sub0] = out[who + 'Locations'];
      await p.waitForFunction(([a, b]) => {
        const c = window.consultdCall;
        return c && c.pub?.location && c.pub.location !== a && c.sub?.location && c.sub.location !== b &&
          document.getElementById('remote-video')?.videoWidth > 0;
      }, [pub0, sub0], { timeout: 120000, polling: 250 });
      out[who + 'MediaAfter'] = await mediaFlowing(p);
      out[who + 'LocationsAfter'] = await p.evaluate(() => [window.consultdCall.pub?.location, window.consultdCall.sub?.location]);
      out[who + 'RecoveredMs'] = Date.now() - t0;
    }
    out.stateAfter = await student.locator('#call-state').getAttribute('data-state');
  }
  await teacher.click('#end-call');
  await teacher.waitForURL(/#\/$/);
} catch (e) {
  out.error = String(e && e.stack || e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
