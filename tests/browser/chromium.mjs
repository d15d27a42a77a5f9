// Launches Debian's Chromium headless through playwright-core, with the
// flags WebRTC on loopback needs (see shared WEBRTC-NOTES): loopback ICE
// allowed, no mDNS-obfuscated candidates, fake camera and microphone.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const ARGS = [
  '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
  '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
  '--autoplay-policy=no-user-gesture-required',
];

// EXTRA: more flags (a later one overrides an earlier one of ARGS).
export async function launch(extra = []) {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'consultd-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ARGS.concat(extra),
    permissions: ['camera', 'microphone'],
  });
  const close = async () => {
    await context.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
  };
  return { context, close };
}

// A browser for several independent users: one context each.
export async function launchBrowser() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ARGS,
  });
  const user = () => browser.newContext({ permissions: ['camera', 'microphone'], viewport: { width: 1100, height: 800 } });
  return { browser, user };
}

// Logs in through the page's form and waits until the page shows it.
export async function login(page, base, user, password = 'demo') {
  await page.goto(base + '/');
  await page.fill('input[name=username]', user);
  await page.fill('input[name=password]', password);
  await page.click('#login-form button[type=submit]');
  await page.locator('#logout:not([hidden])').waitFor({ timeout: 20000 });
}

// The student page's card of the teacher called NAME.
export const teacherCard = (page, name) =>
  page.locator('article.teacher', { has: page.locator('h3', { hasText: name }) });

// In a call: the remote video playing and decoding more and more frames.
// Polled until it shows or 30 s pass: no fixed wait (CI shares two cores
// with a lot).
export async function mediaFlowing(page) {
  const read = () => page.evaluate(async () => {
    const v = document.getElementById('remote-video');
    const s = await window.consultdCall.sub.stats();
    return { w: v.videoWidth, t: v.currentTime, f: s.framesDecoded };
  });
  const a = await read();
  let b = a;
  for (const end = Date.now() + 30000; Date.now() < end;) {
    await page.waitForTimeout(250);
    b = await read();
    if (b.t > a.t + 0.3 && b.f > a.f + 5) break;
  }
  return { videoWidth: b.w, timeAdvanced: b.t - a.t, framesGrew: b.f - a.f, framesDecoded: b.f };
}
