// Drives the AlpineChat widget in Debian's Chromium through every state test_widget.py
// checks, and writes what it saw (plus screenshots) for pytest to judge.
//   node widget.mjs PLAN.json REPORT.json
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const plan = JSON.parse(readFileSync(process.argv[2], "utf8"));
const report = { pageOrigin: plan.page, foreignOrigin: plan.foreign, origins: [] };
const origins = new Set();
const HOST = "div[id^='alpinechat-']";
const STEP = 20000;

const browser = await chromium.launch({
  executablePath: plan.chromium,
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});

function pageUrl(bot, extra = {}, base = plan.page) {
  const query = new URLSearchParams({ bot: bot.slug, key: bot.key, ...extra });
  return `${base}/page?${query}`;
}

async function newPage(options = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...options });
  const page = await context.newPage();
  page.on("request", (request) => {
    const url = new URL(request.url());
    if (url.protocol.startsWith("http")) origins.add(url.origin);
  });
  page.on("pageerror", (error) => console.error("page error:", error.message));
  return page;
}

// Runs fn inside the widget's shadow root.
function inWidget(page, fn, arg) {
  return page.evaluate(
    ([source, host, value]) => {
      const root = document.querySelector(host).shadowRoot;
      return new Function("root", "value", `return (${source})(root, value);`)(root, value);
    },
    [fn.toString(), HOST, arg],
  );
}

async function ready(page) {
  await page.waitForSelector(`${HOST}[data-state="ready"]`, { state: "attached", timeout: STEP });
}

async function open(page) {
  await page.locator(".launcher").click();
  await page.locator(".panel").waitFor({ state: "visible", timeout: STEP });
}

// Sends a message and waits until the new answer is complete; returns what it shows.
async function ask(page, text) {
  const before = await inWidget(page, (root) => root.querySelectorAll(".msg.bot").length);
  await page.locator("#ac-input").fill(text);
  await page.locator("#ac-input").press("Enter");
  await page.waitForFunction(
    ([host, count]) => {
      const bots = document.querySelector(host).shadowRoot.querySelectorAll(".msg.bot");
      return bots.length > count && !bots[bots.length - 1].hasAttribute("aria-busy");
    },
    [HOST, before],
    { timeout: STEP },
  );
  return lastAnswer(page);
}

function lastAnswer(page) {
  return inWidget(page, (root) => {
    const bots = root.querySelectorAll(".msg.bot");
    const node = bots[bots.length - 1];
    const note = node.querySelector(".note,.err");
    return {
      text: node.querySelector(".body").textContent,
      note: note ? { kind: note.dataset.kind, text: note.textContent } : null,
      cards: [...node.querySelectorAll(".card")].map((card) => ({
        type: card.dataset.card,
        text: card.textContent,
        links: [...card.querySelectorAll("a")].map((a) => a.href),
        svg: card.querySelectorAll("svg circle").length,
      })),
      sources: [...node.querySelectorAll(".src a")].map((a) => ({ text: a.textContent, href: a.href })),
      rate: node.querySelectorAll(".rate button").length,
    };
  });
}

async function axe(page) {
  await page.addScriptTag({ content: AXE });
  return page.evaluate(async () => {
    const result = await window.axe.run(document, { resultTypes: ["violations"] });
    return result.violations
      .filter((v) => v.impact === "serious" || v.impact === "critical")
      .map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 4).map((n) => n.target) }));
  });
}

const shot = (page, name) => page.screenshot({ path: `${plan.artifacts}/${name}.png`, animations: "disabled" });
const session = (page, bot) => page.evaluate((slug) => sessionStorage.getItem(`alpinechat:${slug}:session`), bot.slug);

async function boot(page, bot) {
  await ready(page);
  await open(page);
  return inWidget(page, (root) => {
    const host = root.host;
    const style = getComputedStyle(host);
    const tokens = {};
    for (const name of ["--ac-primary", "--ac-bg", "--ac-text"]) tokens[name] = style.getPropertyValue(name).trim();
    const box = root.querySelector(".launcher").getBoundingClientRect();
    return {
      state: host.dataset.state,
      theme: host.dataset.theme,
      tokens,
      title: root.querySelector("h2").textContent,
      greeting: root.querySelector(".msg.bot .body").textContent,
      send: root.querySelector("form.composer button").textContent,
      launcherLabel: root.querySelector(".launcher").getAttribute("aria-label"),
      panelBackground: getComputedStyle(root.querySelector(".panel")).backgroundColor,
      launcherBox: { left: box.left, right: box.right },
      tools: root.querySelectorAll(".tools button").length,
    };
  });
}

const scenarios = {
  async boot_light() {
    const page = await newPage({ colorScheme: "light" });
    await page.goto(pageUrl(plan.bots.main));
    const seen = await boot(page, plan.bots.main);
    await shot(page, "01-boot-light");
    seen.axe = await axe(page);
    return seen;
  },

  async boot_dark() {
    const page = await newPage({ colorScheme: "dark" });
    await page.goto(pageUrl(plan.bots.en));
    const seen = await boot(page, plan.bots.en);
    await shot(page, "02-boot-dark-en-left");
    seen.axe = await axe(page);
    return seen;
  },

  async defaults() {
    const page = await newPage();
    await page.goto(pageUrl(plan.bots.bare));
    const seen = await boot(page, plan.bots.bare);
    await shot(page, "03-config-missing-fields");
    return seen;
  },

  async stream() {
    const page = await newPage();
    await page.goto(pageUrl(plan.bots.main));
    await ready(page);
    await open(page);
    // Watch the answer grow and the live region speak while words arrive.
    await inWidget(page, (root) => {
      window.__samples = [];
      window.__announced = [];
      const live = root.querySelector("[aria-live=polite]");
      new MutationObserver(() => live.textContent && window.__announced.push(live.textContent))
        .observe(live, { childList: true, characterData: true, subtree: true });
      const timer = setInterval(() => {
        const bots = root.querySelectorAll(".msg.bot");
        const last = bots[bots.length - 1];
        if (bots.length > 1) window.__samples.push(last.querySelector(".body").textContent.length);
        if (bots.length > 1 && !last.hasAttribute("aria-busy")) clearInterval(timer);
      }, 50);
    });
    const first = await ask(page, "[[drip:12:0.15]] Wie komme ich zum Wasserschaupfad Umbalfälle?");
    await shot(page, "04-streamed-answer-with-sources");
    const seen = {
      session: await session(page, plan.bots.main),
      samples: await page.evaluate(() => window.__samples),
      announced: await page.evaluate(() => window.__announced),
      finalText: first.text,
      finalLength: first.text.length,
      sources: first.sources,
    };
    // Thumbs down on that first answer.
    await page.locator(".msg.bot >> nth=1").locator("button[data-rating='-1']").click();
    await page.locator(".msg.bot >> nth=1").locator(".rate [role=status]:text('Danke')").waitFor({ timeout: STEP });
    seen.rated = await inWidget(page, (root) => {
      const rate = root.querySelectorAll(".msg.bot")[1].querySelector(".rate");
      return { pressed: rate.querySelector("[data-rating='-1']").getAttribute("aria-pressed"),
        status: rate.querySelector("[role=status]").textContent };
    });
    const [tourId] = plan.bots.main.tour_ids;
    const asks = {
      tour_list: '[[tool:search_tours {"query": "Wanderung"}]] Welche Wanderungen gibt es?',
      tour_detail: `[[tool:get_tour {"tour_id": "${tourId}"}]] Erzähl mir mehr über die Umbalfälle`,
      map: '[[tool:show_map {"query": "Wanderung"}]] Zeig mir die Touren auf der Karte',
      booking: `[[tool:booking_link {"tour_id": "${tourId}"}]] Wo kann ich buchen?`,
      weather: '[[tool:get_weather {"location": "Lienz", "days": 3}]] Wie wird das Wetter in Lienz?',
    };
    seen.cards = {};
    for (const [type, text] of Object.entries(asks)) {
      const answer = await ask(page, text);
      const card = answer.cards.find((c) => c.type === type);
      if (!card) throw new Error(`no ${type} card in ${JSON.stringify(answer)}`);
      seen.cards[type] = card;
      await page.locator(`.card[data-card=${type}]`).last().scrollIntoViewIfNeeded();
      await shot(page, `05-card-${type}`);
    }
    seen.finishes = {};
    for (const [reason, text] of Object.entries({ length: "[[length]] Erzähl alles", error: "[[error]] Hallo", blocked: "[[content_filter]] Hallo" })) {
      seen.finishes[reason] = (await ask(page, text)).note;
      await shot(page, `06-finish-${reason}`);
    }
    seen.axe = await axe(page);
    return seen;
  },

  async forms() {
    const page = await newPage();
    await page.goto(pageUrl(plan.bots.main));
    await ready(page);
    await open(page);
    await ask(page, "Ich möchte eine Führung buchen");
    const seen = { session: await session(page, plan.bots.main) };
    await page.locator("button[data-action=lead]").click();
    await page.locator("form[data-form=lead] button[type=submit]").click();
    seen.leadError = await page.locator("#ac-lead-email-e").textContent();
    await shot(page, "07-lead-form-error");
    seen.leadEmail = `maria.${Date.now()}@example.com`;
    await page.locator("#ac-lead-name").fill("Maria Gruber");
    await page.locator("#ac-lead-email").fill(seen.leadEmail);
    await page.locator("#ac-lead-phone").fill("+43 4852 12345");
    await page.locator("form[data-form=lead] button[type=submit]").click();
    await page.locator("form[data-form=lead]").waitFor({ state: "detached", timeout: STEP });
    seen.leadReply = (await lastAnswer(page)).text;
    await shot(page, "08-lead-sent");
    await page.locator("button[data-action=escalate]").click();
    seen.escalationEmail = `sepp.${Date.now()}@example.com`;
    await page.locator("#ac-escalate-name").fill("Sepp Huber");
    await page.locator("#ac-escalate-email").fill(seen.escalationEmail);
    await page.locator("#ac-escalate-message").fill("Bitte ruft mich wegen einer Gruppenführung zurück.");
    await shot(page, "09-escalation-form");
    await page.locator("form[data-form=escalate] button[type=submit]").click();
    await page.locator("form[data-form=escalate]").waitFor({ state: "detached", timeout: STEP });
    seen.escalationReply = (await lastAnswer(page)).text;
    await shot(page, "10-escalation-sent");
    // Another page of the site in the same tab: the conversation goes on.
    await page.reload();
    await ready(page);
    await open(page);
    seen.restored = await inWidget(page, (root) => [...root.querySelectorAll(".msg")].map((m) => m.querySelector(".body").textContent));
    seen.sessionAfterReload = await session(page, plan.bots.main);
    return seen;
  },

  async proactive() {
    const page = await newPage();
    await page.goto(pageUrl(plan.bots.proactive));
    await ready(page);
    await page.locator(".teaser").waitFor({ state: "visible", timeout: STEP });
    const seen = { teaser: await page.locator(".teaser").textContent(), session: await session(page, plan.bots.proactive) };
    await shot(page, "11-proactive-teaser");
    await page.locator(".teaser").click();
    await ask(page, "Ja, eine leichte Tour bitte");
    await shot(page, "12-proactive-converted");
    await page.reload();
    await ready(page);
    await page.waitForTimeout(1500);
    seen.refiredAfterReload = await page.locator(".teaser").isVisible();
    // The beacons are fire-and-forget: give the convert beacon time to land.
    await page.waitForTimeout(500);
    return seen;
  },

  async budget() {
    const page = await newPage();
    await page.goto(pageUrl(plan.bots.budget));
    await ready(page);
    await open(page);
    const answer = await ask(page, "Hallo");
    await shot(page, "13-budget-exceeded");
    return { error: answer.note && answer.note.text };
  },

  async rate_limited() {
    const page = await newPage();
    await page.goto(pageUrl(plan.bots.limited));
    await ready(page);
    await open(page);
    const answer = await ask(page, "Hallo");
    await shot(page, "14-rate-limited");
    return { error: answer.note && answer.note.text };
  },

  async foreign() {
    const page = await newPage();
    await page.goto(pageUrl(plan.bots.main, {}, plan.foreign));
    await page.waitForSelector(`${HOST}[data-state="unavailable"]`, { state: "attached", timeout: STEP });
    const seen = {
      state: await page.locator(HOST).getAttribute("data-state"),
      launchers: await inWidget(page, (root) => root.querySelectorAll(".launcher").length),
    };
    // The page's own script cannot use the key from here either.
    seen.directChat = await page.evaluate(async ([server, bot]) => {
      try {
        const r = await fetch(`${server}/api/chat/${bot.slug}`, { method: "POST",
          headers: { Authorization: `Bearer ${bot.key}`, "Content-Type": "application/json" },
          body: JSON.stringify({ session_id: "foreign-1", message: "Hallo" }) });
        return `answered ${r.status}`;
      } catch (e) { return `${e.name}: ${e.message}`; }
    }, [plan.server, plan.bots.main]);
    await shot(page, "15-foreign-origin-refused");
    return seen;
  },

  async keyboard() {
    const page = await newPage();
    await page.goto(pageUrl(plan.bots.main));
    await ready(page);
    const focused = () => inWidget(page, (root) => {
      const el = root.activeElement;
      return el ? { id: el.id, cls: el.className, rating: el.dataset.rating || null, action: el.dataset.action || null } : null;
    });
    const seen = {};
    for (let i = 0; i < 10 && !seen.launcherFocused; i++) {
      await page.keyboard.press("Tab");
      seen.launcherFocused = ((await focused()) || {}).cls === "launcher";
    }
    await page.keyboard.press("Enter");
    seen.inputFocusedOnOpen = ((await focused()) || {}).id === "ac-input";
    await page.keyboard.type("Was kostet die Führung?");
    await page.keyboard.press("Enter");
    await page.waitForFunction((host) => {
      const bots = document.querySelector(host).shadowRoot.querySelectorAll(".msg.bot");
      return bots.length > 1 && bots[bots.length - 1].querySelector(".rate");
    }, HOST, { timeout: STEP });
    seen.answered = true;
    for (let i = 0; i < 15; i++) {
      await page.keyboard.press("Shift+Tab");
      const el = await focused();
      if (el && el.rating === "1") break;
    }
    await page.keyboard.press("Space");
    await page.waitForFunction((host) => document.querySelector(host).shadowRoot.querySelector(".rate [role=status]").textContent, HOST);
    seen.ratedWithKeyboard = await inWidget(page, (root) => root.querySelector(".rate [data-rating='1']").getAttribute("aria-pressed"));
    for (let i = 0; i < 15; i++) {
      await page.keyboard.press("Tab");
      const el = await focused();
      if (el && el.action === "lead") break;
    }
    await page.keyboard.press("Enter");
    seen.formFocused = ((await focused()) || {}).id;
    await shot(page, "16-keyboard-lead-form");
    seen.axe = await axe(page);
    await page.keyboard.press("Escape");
    seen.formClosedWithEscape = (await page.locator("form.side").count()) === 0 && ((await focused()) || {}).id === "ac-input";
    await page.keyboard.press("Escape");
    seen.closedWithEscape = !(await page.locator(".panel").isVisible());
    seen.focusBackOnLauncher = ((await focused()) || {}).cls === "launcher";
    return seen;
  },

  async hostile() {
    const page = await newPage();
    await page.goto(pageUrl(plan.bots.hostile));
    await ready(page);
    await open(page);
    const answer = await ask(page, `[[tool:search_tours {"query": "Wanderung"}]] [[say:${JSON.stringify(plan.hostile)}]] Böse Tour Wanderung`);
    await page.locator(".card").last().hover();
    await page.waitForTimeout(300);
    await shot(page, "17-hostile-content-as-text");
    return {
      pwned: await page.evaluate(() => window.__pwned ?? null),
      injected: await inWidget(page, (root) => root.querySelectorAll("img, script, iframe, object, [onerror], [onmouseover], [onclick], [onload]").length),
      hrefs: await inWidget(page, (root) => [...root.querySelectorAll("a")].map((a) => a.getAttribute("href"))),
      answer: answer.text,
      card: answer.cards.map((c) => c.text).join(" "),
      title: await inWidget(page, (root) => root.querySelector("h2").textContent),
      greeting: await inWidget(page, (root) => root.querySelector(".msg.bot .body").textContent),
    };
  },

  async phone() {
    const page = await newPage({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
    await page.goto(pageUrl(plan.bots.it));
    await ready(page);
    await shot(page, "18-phone-closed");
    await page.locator(".launcher").tap();
    await page.locator(".panel").waitFor({ state: "visible", timeout: STEP });
    const answer = await ask(page, "Ciao, quali escursioni ci sono?");
    await shot(page, "19-phone-open-italian");
    const seen = await inWidget(page, (root) => {
      const box = root.querySelector(".panel").getBoundingClientRect();
      return { panel: { width: box.width, height: box.height },
        send: root.querySelector("form.composer button").textContent,
        tools: [...root.querySelectorAll(".tools button")].map((b) => b.textContent) };
    });
    seen.answer = answer.text;
    return seen;
  },

  async demo() {
    const page = await newPage();
    const response = await page.goto(`${plan.server}/demo/${plan.bots.main.slug}?key=${encodeURIComponent(plan.bots.main.key)}`);
    await ready(page);
    await open(page);
    const answer = await ask(page, "Servus!");
    await shot(page, "20-demo-page");
    return { state: "ready", answer: answer.text, csp: response.headers()["content-security-policy"] || "" };
  },
};

for (const [name, run] of Object.entries(scenarios)) {
  try {
    report[name] = { ok: true, ...(await run()) };
    console.log(`ok   ${name}`);
  } catch (error) {
    report[name] = { ok: false, error: String(error && error.stack || error) };
    console.log(`FAIL ${name}: ${error}`);
  }
}
report.origins = [...origins];
await browser.close();
writeFileSync(process.argv[3], JSON.stringify(report, null, 2));
