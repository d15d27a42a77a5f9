// Accessibility audit with axe-core (WCAG 2 A and AA rules) of every page
// a user meets: login, the student's teacher list and my page, the
// teacher's console, the admin page, in English and Korean.
//   node a11y.mjs '{"base": "http://127.0.0.1:PORT"}'
// Prints one JSON line: {"pages": {name: [violation, ...]}} with the
// serious and critical violations only (id, impact, help, first targets).
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { launchBrowser, login as signIn } from './chromium.mjs';

const opts = JSON.parse(process.argv[2]);
const require = createRequire(import.meta.url);
const AXE = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const out = { pages: {} };

async function audit(page, name) {
  // Evaluated through the DevTools protocol, so the page's CSP (no inline
  // scripts) does not stop it.
  await page.evaluate(AXE);
  const res = await page.evaluate(() => window.axe.run(document,
    { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } }));
  out.minor = (out.minor || 0) + res.violations.filter(v => v.impact === 'minor' || v.impact === 'moderate').length;
  (out.passes ||= {})[name] = res.passes.length; // rules that ran and held
  out.pages[name] = res.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
    .map(v => ({ id: v.id, impact: v.impact, help: v.help, targets: v.nodes.slice(0, 3).map(n => n.target.join(' ')) }));
}

const login = (page, user) => signIn(page, opts.base, user);

const { browser, user } = await launchBrowser();
try {
  const page = await (await user()).newPage();
  await page.goto(opts.base + '/');
  await page.locator('#login-form').waitFor();
  await audit(page, 'login');
  await login(page, 'student1');
  await page.locator('article.teacher').first().waitFor({ timeout: 20000 });
  await audit(page, 'student-teachers');
  await page.selectOption('#lang', 'ko');
  await page.locator('article.teacher').first().waitFor({ timeout: 20000 });
  await audit(page, 'student-teachers-ko');
  await page.selectOption('#lang', 'en');
  await page.goto(opts.base + '/#/mypage');
  await page.locator('#view table, #view p').first().waitFor({ timeout: 20000 });
  await audit(page, 'student-mypage');
  const tpage = await (await user()).newPage();
  await login(tpage, 'teacher1');
  await tpage.locator('#presence-state .status').waitFor({ timeout: 20000 });
  await audit(tpage, 'teacher-console');
  const apage = await (await user()).newPage();
  await login(apage, 'admin');
  await apage.locator('#view table').first().waitFor({ timeout: 20000 });
  await audit(apage, 'admin');
} catch (e) {
  out.error = String(e && e.stack || e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
