// Shared helpers for the browser tests: launch Debian's Chromium, open pages
// on roomd's chat page, join rooms, wait for what the page shows, and on any
// failure print each page's state and save a screenshot of every open page.
//
// A script is `node tests/browser/<case>.js <port> <outdir>`; it exits 0 when
// every check passed and non-zero (with the reason on stderr) otherwise.
'use strict';

const fs = require('fs');
const path = require('path');
const readline = require('readline');
const { chromium } = require('playwright-core');

const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const SCRIPT_TIMEOUT = 50000;   // the whole script; pytest allows a little more

class CheckError extends Error {}

function check(cond, msg) {
  if (!cond) throw new CheckError(msg);
}

// Everything a failure report needs to know about one page.
async function snapshot(page) {
  return page.evaluate(() => {
    const q = (s) => document.querySelector(s);
    return {
      status: q('#status') && q('#status').className,
      count: q('#count') && q('#count').textContent,
      who: [...document.querySelectorAll('#who li')].map((li) => li.textContent),
      log: [...document.querySelectorAll('#log li')].slice(-12).map((li) => li.textContent),
    };
  }).catch((e) => ({ error: String(e) }));
}

class T {
  constructor(name, port, outdir) {
    this.name = name;
    this.port = port;
    this.outdir = outdir;
    this.base = `http://127.0.0.1:${port}`;
    this.pages = [];      // [{ page, label, console: [] }]
    this.browser = null;
    this.t0 = Date.now();
  }

  log(...a) {
    console.log(`[${((Date.now() - this.t0) / 1000).toFixed(2)}s]`, ...a);
  }

  async launch() {
    this.browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ARGS });
  }

  // A page in its own context (own sessionStorage), its console kept for the report.
  async page(label, viewport = { width: 900, height: 560 }) {
    const ctx = await this.browser.newContext({ viewport });
    const page = await ctx.newPage();
    const rec = { page, label, console: [] };
    page.on('console', (m) => rec.console.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => rec.console.push(`pageerror: ${e.message}`));
    // What the status indicator went through, for the reconnect checks.
    await page.addInitScript(() => {
      window.__statuses = [];
      document.addEventListener('DOMContentLoaded', () => {
        const st = document.getElementById('status');
        window.__statuses.push(st.className);
        new MutationObserver(() => {
          if (window.__statuses[window.__statuses.length - 1] !== st.className)
            window.__statuses.push(st.className);
        }).observe(st, { attributes: true, attributeFilter: ['class'] });
      });
    });
    this.pages.push(rec);
    return page;
  }

  // Open the page with ?room=, check the room is prefilled, join as name, wait for online.
  async join(page, name, room) {
    await page.goto(`${this.base}/?room=${encodeURIComponent(room)}`);
    const pre = await page.inputValue('#room');
    check(pre === room, `room field prefilled with ${JSON.stringify(pre)}, not ${JSON.stringify(room)}`);
    await page.fill('#name', name);
    await page.click('#enter');
    await this.waitFor(page, () => document.getElementById('status').className === 'online',
      null, `${name} online in #${room}`);
    // The server's own "enter" echo: we are really in the room, not just connected.
    await this.waitFor(page, (r) => [...document.querySelectorAll('#log .notice')]
      .some((li) => li.textContent === 'You joined #' + r), room, `${name}'s "You joined #${room}" notice`);
  }

  async waitFor(page, fn, arg, what, timeout = 8000) {
    try {
      await page.waitForFunction(fn, arg, { timeout, polling: 50 });
    } catch (e) {
      throw new CheckError(`timed out after ${timeout} ms waiting for ${what}`);
    }
  }

  // Type into the composer and press Enter (the way people send).
  async say(page, text) {
    await page.fill('#text', text);
    await page.press('#text', 'Enter');
  }

  // The messages a page shows: [{ name, text, mine }].
  async messages(page) {
    return page.$$eval('#log .msg', (els) => els.map((li) => ({
      name: li.querySelector('.who').textContent,
      text: li.querySelector('.text').textContent,
      mine: li.classList.contains('mine'),
    })));
  }

  async waitMessage(page, name, text, what) {
    await this.waitFor(page, ([n, t]) => [...document.querySelectorAll('#log .msg')].some((li) =>
      li.querySelector('.who').textContent === n && li.querySelector('.text').textContent === t),
    [name, text], what || `message ${JSON.stringify(text)} from ${name}`);
  }

  async screenshots(prefix) {
    const paths = [];
    fs.mkdirSync(this.outdir, { recursive: true });
    for (let i = 0; i < this.pages.length; i++) {
      const p = path.join(this.outdir, `${prefix}-${i}-${this.pages[i].label}.png`);
      try {
        await this.pages[i].page.screenshot({ path: p, timeout: 5000 });
        paths.push(p);
      } catch (e) {
        paths.push(`${p} (failed: ${e.message.split('\n')[0]})`);
      }
    }
    return paths;
  }

  async report(err) {
    console.error(`FAIL ${this.name}: ${err instanceof CheckError ? err.message : err.stack || err}`);
    for (const rec of this.pages) {
      console.error(`--- page ${rec.label} (${rec.page.url()}):`, JSON.stringify(await snapshot(rec.page)));
      for (const line of rec.console.slice(-10))
        console.error(`    console ${line}`);
    }
    for (const p of await this.screenshots('fail'))
      console.error(`screenshot: ${p}`);
  }
}

// Run body(t) with a browser; exit 0 on success, 1 with a report on failure.
function run(name, body) {
  const [port, outdir] = process.argv.slice(2);
  if (!port || !outdir) {
    console.error(`usage: node ${path.basename(process.argv[1])} PORT OUTDIR`);
    process.exit(2);
  }
  const t = new T(name, port, outdir);
  const guard = setTimeout(async () => {
    await t.report(new CheckError(`the whole script took over ${SCRIPT_TIMEOUT} ms`));
    process.exit(1);
  }, SCRIPT_TIMEOUT);
  (async () => {
    let code = 0;
    try {
      await t.launch();
      await body(t);
      t.log(`PASS ${name}`);
    } catch (e) {
      code = 1;
      await t.report(e);
    }
    clearTimeout(guard);
    if (t.browser)
      await t.browser.close().catch(() => {});
    process.exit(code);
  })();
}

// The next line on stdin (the test driving the script writes it); null at its end.
function nextLine() {
  return new Promise((resolve) => {
    const rl = readline.createInterface({ input: process.stdin });
    rl.once('line', (l) => { resolve(l); rl.close(); });
    rl.once('close', () => resolve(null));
  });
}

module.exports = { run, check, CheckError, nextLine };
