/*! AlpineChat widget. Served by the AlpineChat server at /widget/alpinechat.js; embed with
 *  <script src="https://CHAT-SERVER/widget/alpinechat.js" data-chatbot="SLUG" data-key="ac_live_..." async></script>
 *  Optional: data-language="de|en|it", data-theme="light|dark|auto", data-open.
 *  Hand-written, no dependencies; talks to nothing but the server it came from. */
(function () {
  "use strict";
  var script = document.currentScript || document.querySelector("script[data-chatbot][src*='alpinechat']");
  if (!script || !script.dataset.chatbot) return;
  var SLUG = script.dataset.chatbot;
  var KEY = script.dataset.key || "";
  var API = new URL(script.src, location.href).origin;
  var LANGS = ["de", "en", "it"];
  window.__alpinechat = window.__alpinechat || {};
  if (window.__alpinechat[SLUG]) return; // one widget per chatbot and page
  window.__alpinechat[SLUG] = true;

  var S = {
    de: {
      open: "Chat öffnen", close: "Chat schließen", send: "Senden", input: "Deine Nachricht",
      placeholder: "Frag mich etwas …", sources: "Quellen", good: "Hilfreich", bad: "Nicht hilfreich",
      thanks: "Danke für dein Feedback!", length: "Die Antwort wurde gekürzt.",
      blocked: "Darauf kann ich nicht antworten.", budget_exceeded: "Der Chat ist gerade nicht verfügbar.",
      error: "Die Antwort konnte nicht fertiggestellt werden.", network: "Keine Verbindung zum Chat. Bitte versuche es erneut.",
      unavailable: "Der Chat ist gerade nicht verfügbar.", key: "Dieser Chat ist nicht richtig eingerichtet.",
      busy: "Zu viele Anfragen. Bitte versuche es später erneut.", invalid: "Bitte prüfe deine Eingaben.",
      lead: "Kontakt hinterlassen", escalate: "Mit einem Menschen sprechen", name: "Name", email: "E-Mail",
      phone: "Telefon", message: "Dein Anliegen", submit: "Absenden", cancel: "Abbrechen",
      leadDone: "Danke! Wir melden uns bei dir.", required: "Pflichtfeld", typing: "Antwort wird geschrieben …",
      you: "Du", bot: "Assistent", difficulty: "Schwierigkeit", duration: "Dauer", distance: "Strecke",
      ascent: "Aufstieg", details: "Details", book: "Jetzt buchen", map: "Karte", osm: "In OpenStreetMap öffnen",
      noPlaces: "Keine Orte zum Anzeigen.", weather: "Wetter", noWeather: "Keine Vorhersage verfügbar für",
      rain: "Niederschlag", tours: "Touren", noTours: "Keine passenden Touren gefunden.", greeting: "Hallo! Wie kann ich dir helfen?",
      w: ["klar", "teils bewölkt", "Nebel", "Regen", "Schnee", "Schauer", "Gewitter"]
    },
    en: {
      open: "Open chat", close: "Close chat", send: "Send", input: "Your message",
      placeholder: "Ask me anything …", sources: "Sources", good: "Helpful", bad: "Not helpful",
      thanks: "Thanks for your feedback!", length: "The answer was cut short.",
      blocked: "I can't answer that.", budget_exceeded: "The chat is not available right now.",
      error: "The answer could not be completed.", network: "Could not reach the chat. Please try again.",
      unavailable: "The chat is not available right now.", key: "This chat is not set up correctly.",
      busy: "Too many requests. Please try again later.", invalid: "Please check your entries.",
      lead: "Leave your contact", escalate: "Talk to a person", name: "Name", email: "Email",
      phone: "Phone", message: "Your request", submit: "Send", cancel: "Cancel",
      leadDone: "Thank you! We will get back to you.", required: "Required", typing: "Writing an answer …",
      you: "You", bot: "Assistant", difficulty: "Difficulty", duration: "Duration", distance: "Distance",
      ascent: "Ascent", details: "Details", book: "Book now", map: "Map", osm: "Open in OpenStreetMap",
      noPlaces: "No places to show.", weather: "Weather", noWeather: "No forecast available for",
      rain: "Precipitation", tours: "Tours", noTours: "No matching tours found.", greeting: "Hi! How can I help you?",
      w: ["clear", "partly cloudy", "fog", "rain", "snow", "showers", "thunderstorm"]
    },
    it: {
      open: "Apri la chat", close: "Chiudi la chat", send: "Invia", input: "Il tuo messaggio",
      placeholder: "Chiedimi qualcosa …", sources: "Fonti", good: "Utile", bad: "Non utile",
      thanks: "Grazie per il tuo feedback!", length: "La risposta è stata troncata.",
      blocked: "Non posso rispondere a questo.", budget_exceeded: "La chat non è disponibile al momento.",
      error: "Non è stato possibile completare la risposta.", network: "Impossibile raggiungere la chat. Riprova.",
      unavailable: "La chat non è disponibile al momento.", key: "Questa chat non è configurata correttamente.",
      busy: "Troppe richieste. Riprova più tardi.", invalid: "Controlla i dati inseriti.",
      lead: "Lascia il tuo contatto", escalate: "Parla con una persona", name: "Nome", email: "E-mail",
      phone: "Telefono", message: "La tua richiesta", submit: "Invia", cancel: "Annulla",
      leadDone: "Grazie! Ti ricontatteremo.", required: "Obbligatorio", typing: "Sto scrivendo una risposta …",
      you: "Tu", bot: "Assistente", difficulty: "Difficoltà", duration: "Durata", distance: "Distanza",
      ascent: "Dislivello", details: "Dettagli", book: "Prenota ora", map: "Mappa", osm: "Apri in OpenStreetMap",
      noPlaces: "Nessun luogo da mostrare.", weather: "Meteo", noWeather: "Nessuna previsione disponibile per",
      rain: "Precipitazioni", tours: "Escursioni", noTours: "Nessuna escursione trovata.", greeting: "Ciao! Come posso aiutarti?",
      w: ["sereno", "parz. nuvoloso", "nebbia", "pioggia", "neve", "rovesci", "temporale"]
    }
  };

  // ── Small helpers ───────────────────────────────────────────────────────────
  function obj(v) { return v && typeof v === "object" && !Array.isArray(v) ? v : {}; }
  function str(v) { return typeof v === "string" ? v : typeof v === "number" ? String(v) : ""; }
  // A text per language, or one text for all.
  function pick(v, lang) { return typeof v === "string" ? v : str(obj(v)[lang]); }
  // Only http(s) links: javascript:, data: and the like are shown as text, never followed.
  function safeUrl(u) {
    if (typeof u !== "string" || !u) return null;
    try {
      var url = new URL(u, location.href);
      return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
    } catch (e) { return null; }
  }
  // Every node is built here; strings become text nodes, so content is never parsed as HTML.
  function h(tag, attrs, kids) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      var v = attrs[k];
      if (v === null || v === undefined || v === false) return;
      if (k === "on") Object.keys(v).forEach(function (e) { node.addEventListener(e, v[e]); });
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    });
    [].concat(kids || []).forEach(function (kid) {
      if (kid === null || kid === undefined || kid === "") return;
      node.appendChild(typeof kid === "object" ? kid : document.createTextNode(String(kid)));
    });
    return node;
  }
  function link(url, label, cls) {
    var safe = safeUrl(url);
    return safe ? h("a", { href: safe, target: "_blank", rel: "noopener noreferrer nofollow", "class": cls }, label)
      : h("span", { "class": cls ? cls + " off" : null }, label);
  }
  var store = (function () {
    try { var s = window.sessionStorage; s.setItem("ac:t", "1"); s.removeItem("ac:t"); return s; } catch (e) { return null; }
  })();
  var memory = {};
  function load(k) { try { return store ? store.getItem(k) : memory[k] || null; } catch (e) { return memory[k] || null; } }
  function save(k, v) { try { if (store) store.setItem(k, v); else memory[k] = v; } catch (e) { memory[k] = v; } }
  function newId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return "s-" + Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 12);
  }
  // One session per tab (sessionStorage is per tab) and chatbot.
  var SESSION = load("alpinechat:" + SLUG + ":session");
  if (!SESSION) { SESSION = newId(); save("alpinechat:" + SLUG + ":session", SESSION); }
  function pageUrl() { return location.href.slice(0, 2048); }

  function api(path, body, auth) {
    var headers = { "Content-Type": "application/json" };
    if (auth && KEY) headers.Authorization = "Bearer " + KEY;
    return fetch(API + path + encodeURIComponent(SLUG), {
      method: "POST", headers: headers, body: JSON.stringify(body), mode: "cors", credentials: "omit"
    });
  }
  function beacon(kind, key) {
    fetch(API + "/api/chat/" + encodeURIComponent(SLUG) + "/telemetry/proactive", {
      method: "POST", headers: { "Content-Type": "application/json" }, keepalive: true, mode: "cors", credentials: "omit",
      body: JSON.stringify({ kind: kind, trigger_key: key.slice(0, 120), session_id: SESSION, page_url: pageUrl() })
    }).catch(function () {});
  }

  // Server-sent events from a fetch body: lines, fields, a blank line ends an event.
  function sseParser(onEvent) {
    var buf = "", data = [], id = null;
    function line(l) {
      if (l === "") {
        if (data.length) onEvent(data.join("\n"), id);
        data = [];
        return;
      }
      if (l.charAt(0) === ":") return;
      var i = l.indexOf(":"), field = i < 0 ? l : l.slice(0, i), value = i < 0 ? "" : l.slice(i + 1);
      if (value.charAt(0) === " ") value = value.slice(1);
      if (field === "data") data.push(value);
      else if (field === "id") id = value;
    }
    return function (text, end) {
      buf += text;
      var re = /\r\n|\r|\n/g, start = 0, m;
      while ((m = re.exec(buf))) {
        if (m[0] === "\r" && m.index === buf.length - 1 && !end) break; // maybe half of \r\n
        line(buf.slice(start, m.index));
        start = re.lastIndex;
      }
      buf = buf.slice(start);
      if (end) { if (buf) line(buf); line(""); buf = ""; }
    };
  }

  // ── Theme: widget-config tokens as CSS variables on the host ────────────────
  var TOKEN = /^--ac-[a-z0-9-]{1,40}$/;
  function cleanValue(v) {
    v = str(v).trim();
    // No url()/image(): the widget fetches nothing but the API; no breaking out of the declaration.
    return v.length <= 120 && !/url\(|image\(|image-set|@|[;{}<>\\]/i.test(v) ? v : "";
  }
  function luminance(hex) {
    var m = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.exec(hex || "");
    if (!m) return null;
    var x = m[1].length === 3 ? m[1].replace(/./g, "$&$&") : m[1];
    var c = [0, 2, 4].map(function (i) {
      var v = parseInt(x.slice(i, i + 2), 16) / 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  }
  function tokens(config, mode) {
    var colors = obj(config.colors), out = {};
    Object.keys(colors).forEach(function (k) {
      var name = "--ac-" + k.replace(/_/g, "-").toLowerCase();
      if (TOKEN.test(name) && cleanValue(colors[k])) out[name] = cleanValue(colors[k]);
    });
    var theme = obj(obj(config.theme)[mode]);
    Object.keys(theme).forEach(function (k) {
      var name = k.indexOf("--") === 0 ? k : "--ac-" + k;
      if (TOKEN.test(name) && cleanValue(theme[k])) out[name] = cleanValue(theme[k]);
    });
    // Text on the primary colour: readable whatever the tenant picked (unless the theme says).
    if (!obj(config.theme)[mode] || !theme["--ac-on-primary"]) {
      var l = luminance(out["--ac-primary"]);
      if (l !== null) out["--ac-on-primary"] = l > 0.18 ? "#111111" : "#ffffff";
    }
    return out;
  }

  var CSS = [
    ":host{all:initial;--ac-primary:#0f766e;--ac-on-primary:#fff;--ac-bg:#fff;--ac-text:#111827;font:15px/1.45 var(--ac-font,system-ui,-apple-system,'Segoe UI',Roboto,sans-serif)}",
    "*{box-sizing:border-box}",
    ".ac{position:fixed;z-index:2147483000;bottom:20px;right:20px;display:flex;flex-direction:column;align-items:flex-end;gap:10px;color:var(--ac-text)}",
    ".left{right:auto;left:20px;align-items:flex-start}.top{bottom:auto;top:20px;flex-direction:column-reverse}",
    "button,input,textarea{font:inherit;color:inherit}",
    "button{cursor:pointer}",
    ":focus-visible{outline:3px solid var(--ac-focus,#2563eb);outline-offset:2px}",
    ".launcher{width:56px;height:56px;border-radius:50%;border:0;background:var(--ac-primary);color:var(--ac-on-primary);box-shadow:0 4px 14px rgba(0,0,0,.25);display:grid;place-items:center}",
    ".launcher svg{width:28px;height:28px;fill:currentColor}",
    ".teaser{max-width:260px;background:var(--ac-bg);color:var(--ac-text);border:1px solid var(--mix);border-radius:12px;padding:10px 12px;box-shadow:0 4px 14px rgba(0,0,0,.18);text-align:left}",
    ".panel{--mix:color-mix(in srgb,var(--ac-text) 18%,var(--ac-bg));--muted:color-mix(in srgb,var(--ac-text) 72%,var(--ac-bg));--soft:color-mix(in srgb,var(--ac-text) 7%,var(--ac-bg));width:380px;max-width:calc(100vw - 24px);height:min(620px,calc(100vh - 110px));background:var(--ac-bg);color:var(--ac-text);border:1px solid var(--mix);border-radius:var(--ac-radius,14px);box-shadow:0 10px 30px rgba(0,0,0,.25);display:flex;flex-direction:column;overflow:hidden}",
    ".ac{--mix:color-mix(in srgb,var(--ac-text) 18%,var(--ac-bg))}",
    ".panel[hidden],.teaser[hidden],[hidden]{display:none!important}",
    "header{display:flex;align-items:center;gap:8px;padding:12px 14px;background:var(--ac-primary);color:var(--ac-on-primary)}",
    "h2{font-size:16px;margin:0;flex:1;overflow-wrap:anywhere}",
    ".x{background:none;border:0;color:inherit;font-size:24px;line-height:1;width:36px;height:36px;border-radius:8px}",
    ".log{flex:1;overflow-y:auto;padding:14px;display:flex;flex-direction:column;gap:10px}",
    ".msg{max-width:88%;padding:9px 12px;border-radius:12px;white-space:pre-wrap;overflow-wrap:anywhere}",
    ".user{align-self:flex-end;background:var(--ac-primary);color:var(--ac-on-primary);border-bottom-right-radius:4px}",
    ".bot{align-self:flex-start;background:var(--soft);border-bottom-left-radius:4px;max-width:94%}",
    ".sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}",
    ".typing:empty::after{content:'…';color:var(--muted)}",
    ".note,.err{margin-top:6px;font-size:13px;padding:6px 8px;border-radius:8px;border-left:3px solid #b45309;background:var(--ac-bg);white-space:normal}",
    ".err{border-color:#b91c1c}",
    ".src{margin:8px 0 0;padding:0;list-style:none;font-size:13px;white-space:normal}.src li{margin:2px 0}",
    ".src b,.card h3{font-size:13px;margin:0 0 4px;font-weight:600}",
    "a{color:var(--ac-link,var(--ac-text));text-decoration:underline}",
    ".off{text-decoration:line-through dotted}",
    ".card{margin-top:8px;padding:10px;border:1px solid var(--mix);border-radius:10px;background:var(--ac-bg);white-space:normal}",
    ".card ul,.card ol{margin:0;padding-left:18px}.card li{margin:6px 0}",
    ".facts{color:var(--muted);font-size:13px}",
    ".btn{display:inline-block;margin-top:6px;padding:6px 12px;border-radius:8px;background:var(--ac-primary);color:var(--ac-on-primary);text-decoration:none;border:0}",
    ".days{display:flex;gap:6px;overflow-x:auto}.day{flex:1;min-width:80px;text-align:center;font-size:12px;padding:6px 4px;border-radius:8px;background:var(--soft);overflow-wrap:normal}",
    "svg.map{width:100%;height:140px;background:var(--soft);border-radius:8px}",
    ".rate{display:flex;gap:6px;margin-top:6px;align-items:center;font-size:13px;white-space:normal}",
    ".rate button{border:1px solid var(--mix);background:var(--ac-bg);border-radius:8px;padding:4px 9px;line-height:0}",
    ".rate button[aria-pressed=true]{background:var(--ac-primary);color:var(--ac-on-primary)}",
    ".tools{display:flex;gap:8px;flex-wrap:wrap;padding:0 14px 8px}",
    ".tools button{background:none;border:1px solid var(--mix);border-radius:999px;padding:4px 10px;font-size:13px}",
    "form.composer{display:flex;gap:8px;padding:10px;border-top:1px solid var(--mix)}",
    "textarea{flex:1;resize:none;border:1px solid var(--mix);border-radius:10px;padding:8px 10px;background:var(--ac-bg);min-height:40px;max-height:120px}",
    ".primary{background:var(--ac-primary);color:var(--ac-on-primary);border:0;border-radius:10px;padding:0 14px;min-height:40px}",
    ".primary:disabled{opacity:.6;cursor:default}",
    "form.side{padding:12px;margin:0 10px 10px;border:1px solid var(--mix);border-radius:10px;display:grid;gap:8px;white-space:normal;background:var(--ac-bg);max-height:60%;overflow-y:auto}",
    "form.side h3{margin:0;font-size:14px}",
    "label{display:grid;gap:2px;font-size:13px}",
    "input,form.side textarea{border:1px solid var(--mix);border-radius:8px;padding:6px 8px;background:var(--ac-bg)}",
    "[aria-invalid=true]{border-color:#b91c1c}.fe{color:var(--ac-text);font-size:12px}.fe:not(:empty)::before{content:'⚠ '}",
    ".row{display:flex;gap:8px;justify-content:flex-end}.ghost{background:none;border:1px solid var(--mix);border-radius:10px;padding:0 12px;min-height:36px}",
    "@media (max-width:480px){.ac{bottom:12px;right:12px}.left{left:12px}.open .panel{position:fixed;inset:0;width:100%;max-width:none;height:100%;border-radius:0;border:0}.open .launcher{display:none}}",
    "@media (prefers-reduced-motion:no-preference){.panel{animation:in .15s ease-out}@keyframes in{from{opacity:0;transform:translateY(8px)}}}"
  ].join("");

  // Icons as inline SVG (no icon font or emoji font needed); constant markup.
  var THUMB = '<svg viewBox="0 0 24 24" width="16" height="16" aria-hidden="true"><path%fill="currentColor" d="M2 10h4v11H2zm6 11h9.3a2 2 0 0 0 2-1.6l1.6-7A2 2 0 0 0 19 10h-5.6l.9-4.3A2 2 0 0 0 12.3 3L8 9.5z"/></svg>';
  var WEATHER = [[0, 0], [3, 1], [48, 2], [67, 3], [77, 4], [82, 5], [86, 5], [99, 6]];
  function weatherWord(t, code) {
    if (typeof code !== "number") return "";
    for (var i = 0; i < WEATHER.length; i++) if (code <= WEATHER[i][0]) return t.w[WEATHER[i][1]];
    return "";
  }

  // ── Boot ────────────────────────────────────────────────────────────────────
  var host = h("div", { id: "alpinechat-" + SLUG.replace(/[^a-z0-9_-]/gi, ""), "data-state": "loading" });
  var root = host.attachShadow({ mode: "open" });
  function mount() { document.body.appendChild(host); }
  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);

  fetch(API + "/api/widget-config/" + encodeURIComponent(SLUG), { mode: "cors", credentials: "omit" })
    .then(function (r) { if (!r.ok) throw new Error("widget-config " + r.status); return r.json(); })
    .then(function (config) { start(obj(config)); })
    .catch(function (e) {
      // Not allowed from this origin, or no such chatbot: nothing is shown to visitors.
      host.setAttribute("data-state", "unavailable");
      if (window.console) console.warn("AlpineChat: widget unavailable (" + (e && e.message) + ")");
    });

  function start(config) {
    var widget = obj(config.widget);
    var asked = str(script.dataset.language);
    var lang = LANGS.indexOf(asked) >= 0 ? asked : LANGS.indexOf(config.language) >= 0 ? config.language : "de";
    var t = S[lang];
    var title = str(config.title) || "Chat";
    // A plain greeting is in the chatbot's language: another page language gets the default.
    var greeting = (typeof config.greeting === "object" ? pick(config.greeting, lang)
      : asked && asked !== config.language ? "" : str(config.greeting)) || t.greeting;
    var leadOn = widget.lead_capture === true;
    var escalationOn = obj(config.escalation).enabled === true;
    var contextOn = obj(obj(config.features).page_context).enabled === true;
    var placement = str(widget.placement) || "bottom-right";
    var modeWanted = str(script.dataset.theme || widget.theme) || "auto";
    var busy = false, fired = [], converted = false;
    // The transcript (text only) and conversation survive navigation within the tab.
    var LOG = "alpinechat:" + SLUG + ":log", CONV = "alpinechat:" + SLUG + ":conversation";
    var conversationId = load(CONV), history = [];
    try { history = JSON.parse(load(LOG) || "[]"); } catch (e) {}
    if (!Array.isArray(history)) history = [];
    function remember(who, text) {
      history = history.concat([{ w: who, t: text.slice(0, 4000) }]).slice(-30);
      save(LOG, JSON.stringify(history));
    }

    var sheet = null;
    try { sheet = new CSSStyleSheet(); sheet.replaceSync(CSS); root.adoptedStyleSheets = [sheet]; }
    catch (e) { root.appendChild(h("style", { text: CSS })); }

    var media = window.matchMedia ? matchMedia("(prefers-color-scheme: dark)") : null;
    function applyTheme() {
      var mode = modeWanted === "dark" || modeWanted === "light" ? modeWanted : media && media.matches ? "dark" : "light";
      var values = tokens(config, mode);
      host.setAttribute("data-theme", mode);
      host.removeAttribute("style");
      Object.keys(values).forEach(function (k) { host.style.setProperty(k, values[k]); });
    }
    applyTheme();
    if (media && media.addEventListener) media.addEventListener("change", applyTheme);

    var live = h("div", { "class": "sr", "aria-live": "polite", "aria-atomic": "true" });
    var log = h("div", { "class": "log", role: "log", "aria-live": "off", "aria-label": title, tabindex: "0" });
    var input = h("textarea", { id: "ac-input", rows: "1", maxlength: "4000", placeholder: t.placeholder, "aria-label": t.input });
    var sendButton = h("button", { type: "submit", "class": "primary" }, t.send);
    var composer = h("form", { "class": "composer" }, [input, sendButton]);
    var tools = h("div", { "class": "tools" });
    var closeButton = h("button", { type: "button", "class": "x", "aria-label": t.close, on: { click: function () { toggle(false); } } }, "×");
    var panel = h("section", { "class": "panel", id: "ac-panel", role: "dialog", "aria-label": title, hidden: true },
      [h("header", null, [h("h2", null, title), closeButton]), log, tools, composer, live]);
    var launcher = h("button", { type: "button", "class": "launcher", "aria-expanded": "false", "aria-controls": "ac-panel",
      "aria-label": t.open + ": " + title, on: { click: function () { toggle(panel.hidden); } } });
    launcher.innerHTML = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4H4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z"/></svg>';
    var teaser = h("button", { type: "button", "class": "teaser", hidden: true });
    var wrap = h("div", { "class": "ac" + (/left/.test(placement) ? " left" : "") + (/top/.test(placement) ? " top" : ""), lang: lang },
      [panel, teaser, launcher]);
    root.appendChild(wrap);
    host.setAttribute("data-state", "ready");

    function announce(text) { if (text) { live.textContent = ""; setTimeout(function () { live.textContent = text; }, 30); } }
    function scroll() { log.scrollTop = log.scrollHeight; }
    function toggle(open) {
      panel.hidden = !open;
      wrap.classList.toggle("open", open);
      launcher.setAttribute("aria-expanded", String(open));
      teaser.hidden = true;
      if (open) {
        if (!log.firstChild) {
          bubble("bot", greeting);
          history.forEach(function (m) { bubble(m.w === "u" ? "user" : "bot", str(obj(m).t)); });
        }
        input.focus();
      } else launcher.focus();
    }
    panel.addEventListener("keydown", function (e) {
      if (e.key !== "Escape") return;
      e.stopPropagation();
      var open = panel.querySelector("form.side");
      if (open) shut(open); else toggle(false); // Escape closes a form first, then the chat
    });
    input.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); composer.requestSubmit(); }
    });
    composer.addEventListener("submit", function (e) {
      e.preventDefault();
      var text = input.value.trim();
      if (text && !busy) { input.value = ""; ask(text); }
    });
    function bubble(who, text) {
      var node = h("div", { "class": "msg " + who }, [h("span", { "class": "sr" }, (who === "user" ? t.you : t.bot) + ": ")]);
      var body = h("span", { "class": "body" }, text);
      node.appendChild(body);
      log.appendChild(node);
      scroll();
      return { node: node, body: body };
    }

    // ── Chat turn ──
    function pageContext() {
      var meta = document.querySelector("meta[name='description']");
      var main = document.querySelector("main,article") || document.body;
      var excerpt = (meta && meta.content) || (main && main.innerText) || "";
      var context = { title: document.title.slice(0, 500), excerpt: excerpt.replace(/\s+/g, " ").trim().slice(0, 800) };
      if (/^https?:/.test(location.href) && location.href.length <= 2048) context.url = location.href;
      return context;
    }
    function ask(text) {
      busy = true;
      sendButton.disabled = true;
      bubble("user", text);
      remember("u", text);
      if (fired.length && !converted) { converted = true; fired.forEach(function (k) { beacon("convert", k); }); }
      var answer = bubble("bot typing", "");
      answer.body.className = "body typing";
      answer.node.setAttribute("aria-busy", "true");
      var request = { session_id: SESSION, message: text.slice(0, 4000), language: lang, page_url: pageUrl() };
      if (contextOn) request.page_context = pageContext();
      var state = { text: "", spoken: 0, error: false, done: false, finish: null, messageId: null };
      function finish(problem) {
        if (problem && !state.error) fail(answer, problem, state);
        answer.node.classList.remove("typing");
        answer.body.classList.remove("typing");
        answer.node.removeAttribute("aria-busy");
        announce(state.text.slice(state.spoken).trim());
        state.spoken = state.text.length;
        if (state.finish && state.finish !== "stop" && !state.error) note(answer, t[state.finish] || t.error, "note", state.finish);
        if (state.messageId && conversationId && state.text) rating(answer, state.messageId);
        if (state.text) remember("b", state.text);
        busy = false;
        sendButton.disabled = false;
        scroll();
      }
      api("/api/chat/", request, true).then(function (response) {
        if (!response.ok) {
          var status = response.status;
          finish(status === 401 ? t.key : status === 404 ? t.unavailable : status === 422 ? t.invalid : status === 429 ? t.busy : t.network);
          return;
        }
        conversationId = response.headers.get("X-Conversation-Id") || conversationId;
        if (conversationId) save(CONV, conversationId);
        state.messageId = response.headers.get("X-Message-Id");
        var feed = sseParser(function (data) {
          var event;
          try { event = JSON.parse(data); } catch (e) { return; }
          handle(answer, obj(event), state);
        });
        var reader = response.body.getReader(), decoder = new TextDecoder();
        function pump() {
          return reader.read().then(function (chunk) {
            if (chunk.done) { feed(decoder.decode(), true); finish(state.done ? null : t.network); return; }
            feed(decoder.decode(chunk.value, { stream: true }), false);
            return pump();
          });
        }
        return pump();
      }).catch(function () { finish(t.network); });
    }
    function handle(answer, event, state) {
      switch (event.type) {
        case "text":
          state.text += str(event.content);
          answer.body.textContent = state.text;
          answer.body.classList.remove("typing");
          // Announce whole sentences as they complete, not every chunk.
          var end = Math.max(state.text.lastIndexOf(". "), state.text.lastIndexOf("! "), state.text.lastIndexOf("? "), state.text.lastIndexOf("\n"));
          if (end + 1 > state.spoken) { announce(state.text.slice(state.spoken, end + 1).trim()); state.spoken = end + 1; }
          break;
        case "rag": sources(answer, event.sources); break;
        case "card": answer.node.appendChild(card(obj(event.card))); break;
        case "error": fail(answer, str(event.message) || t.error, state); break;
        case "finish": state.finish = str(event.reason); answer.node.setAttribute("data-finish", state.finish); break;
        case "done": state.done = true; break;
      }
      scroll();
    }
    function fail(answer, message, state) {
      state.error = true;
      note(answer, message, "err", "error");
      announce(message);
    }
    function note(answer, text, cls, kind) {
      answer.node.appendChild(h("div", { "class": cls, "data-kind": kind }, text));
      if (cls === "note") announce(text);
    }
    function sources(answer, list) {
      if (!Array.isArray(list) || !list.length) return;
      var items = list.slice(0, 8).map(function (s) {
        s = obj(s);
        return h("li", null, link(s.url, str(s.title) || str(s.url) || "?"));
      });
      answer.sources = h("ul", { "class": "src", "aria-label": t.sources }, items);
      answer.node.appendChild(h("div", null, [h("b", null, t.sources), answer.sources]));
    }
    function rating(answer, messageId) {
      var status = h("span", { role: "status" });
      function vote(value, label) {
        var button = h("button", { type: "button", "aria-label": label, title: label, "aria-pressed": "false", "data-rating": value,
          on: { click: function (e) { rate(value, e.currentTarget); } } });
        button.innerHTML = THUMB.replace("%", value > 0 ? " " : ' transform="rotate(180 12 12)" ');
        return button;
      }
      var up = vote(1, t.good), down = vote(-1, t.bad);
      function rate(value, button) {
        fetch(API + "/api/feedback/" + encodeURIComponent(SLUG), {
          method: "POST", headers: { "Content-Type": "application/json" }, mode: "cors", credentials: "omit",
          body: JSON.stringify({ rating: value, conversation_id: conversationId, message_id: messageId })
        }).then(function (r) {
          if (!r.ok) throw new Error(r.status);
          up.setAttribute("aria-pressed", String(button === up));
          down.setAttribute("aria-pressed", String(button === down));
          status.textContent = t.thanks;
        }).catch(function () { status.textContent = t.network; });
      }
      answer.node.appendChild(h("div", { "class": "rate" }, [up, down, status]));
    }

    // ── Cards (ChatCardEvent) ──
    function facts(tour) {
      var parts = [];
      if (str(tour.difficulty)) parts.push(t.difficulty + ": " + str(tour.difficulty));
      if (str(tour.duration)) parts.push(t.duration + ": " + str(tour.duration));
      if (typeof tour.distance_km === "number") parts.push(t.distance + ": " + tour.distance_km + " km");
      if (typeof tour.ascent_m === "number") parts.push(t.ascent + ": " + tour.ascent_m + " m");
      return parts.length ? h("div", { "class": "facts" }, parts.join(" · ")) : null;
    }
    function tourItem(tour, detailed) {
      tour = obj(tour);
      var name = str(tour.title) || "?";
      return [detailed ? h("h3", null, link(tour.url, name)) : link(tour.url, name), facts(tour),
        str(tour.summary) ? h("div", null, str(tour.summary)) : null,
        tour.booking_url && safeUrl(tour.booking_url) ? link(tour.booking_url, t.book, "btn") : null];
    }
    function card(c) {
      var type = str(c.type), node = h("div", { "class": "card", "data-card": type });
      if (type === "tour_list") {
        var tours = Array.isArray(c.tours) ? c.tours.slice(0, 10) : [];
        node.appendChild(h("h3", null, t.tours + (str(c.query) ? ": " + str(c.query) : "")));
        node.appendChild(tours.length ? h("ul", null, tours.map(function (x) { return h("li", null, tourItem(x)); }))
          : h("p", null, t.noTours));
      } else if (type === "tour_detail") {
        tourItem(c.tour || (Array.isArray(c.tours) && c.tours[0])).forEach(function (kid) { if (kid) node.appendChild(kid); });
      } else if (type === "weather") {
        var place = str(c.location) || str(c.query);
        node.appendChild(h("h3", null, t.weather + (place ? ": " + place : "")));
        var days = Array.isArray(c.days) ? c.days.slice(0, 7) : [];
        if (c.available === false || !days.length) node.appendChild(h("p", null, t.noWeather + " " + (place || "?") + "."));
        else node.appendChild(h("div", { "class": "days" }, days.map(function (d) {
          d = obj(d);
          var date = new Date(str(d.date) + "T12:00:00");
          var label = isNaN(date) ? str(d.date) : date.toLocaleDateString(lang, { weekday: "short", day: "numeric", month: "numeric" });
          var temps = (typeof d.temp_min === "number" ? Math.round(d.temp_min) + "°" : "") +
            (typeof d.temp_max === "number" ? " / " + Math.round(d.temp_max) + "°" : "");
          return h("div", { "class": "day" }, [h("div", null, label), h("div", null, str(d.summary) || weatherWord(t, d.weathercode)),
            h("div", null, temps), typeof d.precipitation_mm === "number" ? h("div", null, t.rain + " " + d.precipitation_mm + " mm") : null]);
        })));
      } else if (type === "map") {
        node.appendChild(h("h3", null, t.map + (str(c.query) ? ": " + str(c.query) : "")));
        var markers = (Array.isArray(c.markers) ? c.markers : []).map(obj).filter(function (m) {
          return typeof m.lat === "number" && typeof m.lon === "number" && Math.abs(m.lat) <= 90 && Math.abs(m.lon) <= 180;
        }).slice(0, 20);
        if (!markers.length) node.appendChild(h("p", null, t.noPlaces));
        else { node.appendChild(mapView(markers)); node.appendChild(h("ol", null, markers.map(function (m) {
          var osm = "https://www.openstreetmap.org/?mlat=" + m.lat + "&mlon=" + m.lon + "#map=14/" + m.lat + "/" + m.lon;
          return h("li", null, [link(m.url, str(m.title) || "?"), " · ", link(osm, t.osm)]);
        }))); }
      } else if (type === "booking") {
        node.appendChild(h("h3", null, str(c.title) || t.book));
        node.appendChild(link(c.url, t.book, "btn"));
      } else return h("span");
      return node;
    }
    // A static view of the markers: their relative positions, no tiles fetched.
    function mapView(markers) {
      var NS = "http://www.w3.org/2000/svg";
      var lats = markers.map(function (m) { return m.lat; }), lons = markers.map(function (m) { return m.lon; });
      var minLat = Math.min.apply(null, lats), maxLat = Math.max.apply(null, lats);
      var minLon = Math.min.apply(null, lons), maxLon = Math.max.apply(null, lons);
      var k = Math.cos((minLat + maxLat) / 2 * Math.PI / 180);
      var spanX = Math.max((maxLon - minLon) * k, 0.01), spanY = Math.max(maxLat - minLat, 0.01), scale = Math.min(260 / spanX, 100 / spanY);
      var svg = document.createElementNS(NS, "svg");
      svg.setAttribute("viewBox", "0 0 300 140");
      svg.setAttribute("class", "map");
      svg.setAttribute("role", "img");
      svg.setAttribute("aria-label", t.map + ": " + markers.length);
      markers.forEach(function (m, i) {
        var x = 150 + ((m.lon - (minLon + maxLon) / 2) * k) * scale, y = 70 - (m.lat - (minLat + maxLat) / 2) * scale;
        var g = document.createElementNS(NS, "g"), dot = document.createElementNS(NS, "circle"), label = document.createElementNS(NS, "text");
        dot.setAttribute("cx", x); dot.setAttribute("cy", y); dot.setAttribute("r", 9); dot.setAttribute("fill", "var(--ac-primary)");
        label.setAttribute("x", x); label.setAttribute("y", y + 4); label.setAttribute("text-anchor", "middle");
        label.setAttribute("font-size", "11"); label.setAttribute("fill", "var(--ac-on-primary)");
        label.textContent = String(i + 1);
        g.appendChild(dot); g.appendChild(label); svg.appendChild(g);
      });
      return svg;
    }

    // ── Lead and escalation forms ──
    function form(kind, fields, heading, submit) {
      var existing = panel.querySelector("form.side");
      if (existing) existing.remove();
      tools.hidden = true; // the form takes the tools' place until it closes
      var errors = {};
      var controls = fields.map(function (f) {
        var id = "ac-" + kind + "-" + f.name;
        var control = h(f.area ? "textarea" : "input", { id: id, name: f.name, type: f.area ? null : f.type || "text",
          required: f.required, maxlength: f.max, autocomplete: f.auto, "aria-describedby": id + "-e", rows: f.area ? "3" : null });
        errors[f.name] = h("span", { "class": "fe", id: id + "-e" });
        return h("label", { "for": id }, [f.label + (f.required ? " *" : ""), control, errors[f.name]]);
      });
      var status = h("div", { role: "status" });
      var el = h("form", { "class": "side", "data-form": kind, "aria-label": heading, novalidate: true }, [h("h3", null, heading)].concat(controls, [status,
        h("div", { "class": "row" }, [h("button", { type: "button", "class": "ghost", on: { click: function () { shut(el); } } }, t.cancel),
          h("button", { type: "submit", "class": "primary" }, t.submit)])]));
      el.addEventListener("submit", function (e) {
        e.preventDefault();
        var body = {}, bad = false;
        fields.forEach(function (f) {
          var control = el.elements[f.name], value = control.value.trim();
          var wrong = (f.required && !value) || (f.type === "email" && value && !/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(value)) ||
            (f.min && value && value.length < f.min);
          errors[f.name].textContent = wrong ? (value ? t.invalid : t.required) : "";
          control.setAttribute("aria-invalid", String(!!wrong));
          if (wrong && !bad) { bad = true; control.focus(); }
          if (value) body[f.name] = value;
        });
        if (bad) return;
        body.session_id = SESSION;
        body.page_url = pageUrl();
        submit(body, el, status, errors);
      });
      panel.insertBefore(el, composer);
      el.elements[0].focus();
    }
    function shut(el) {
      el.remove();
      tools.hidden = false;
      input.focus();
    }
    function post(path, body, el, status, errors, done) {
      status.textContent = "";
      api(path, body, true).then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (data) {
          if (r.ok) { shut(el); done(obj(data)); return; }
          var fieldErrors = obj(obj(data).errors);
          Object.keys(fieldErrors).forEach(function (k) {
            if (errors[k]) { errors[k].textContent = [].concat(fieldErrors[k]).join(" "); el.elements[k].setAttribute("aria-invalid", "true"); }
          });
          status.textContent = r.status === 429 ? t.busy : r.status === 422 ? t.invalid : r.status === 401 ? t.key : t.unavailable;
        });
      }).catch(function () { status.textContent = t.network; });
    }
    var contact = [{ name: "name", label: t.name, max: 120, auto: "name" },
      { name: "email", label: t.email, type: "email", required: true, max: 190, auto: "email" },
      { name: "phone", label: t.phone, type: "tel", max: 40, auto: "tel" }];
    if (leadOn) tools.appendChild(h("button", { type: "button", "data-action": "lead", on: { click: function () {
      form("lead", contact, t.lead, function (body, el, status, errors) {
        post("/api/lead/", body, el, status, errors, function () { bubble("bot", t.leadDone); remember("b", t.leadDone); announce(t.leadDone); });
      });
    } } }, t.lead));
    if (escalationOn) tools.appendChild(h("button", { type: "button", "data-action": "escalate", on: { click: function () {
      form("escalate", contact.concat([{ name: "message", label: t.message, area: true, required: true, min: 5, max: 4000 }]), t.escalate,
        function (body, el, status, errors) {
          if (conversationId) body.conversation_id = conversationId;
          post("/api/escalate/", body, el, status, errors, function (data) {
            var text = str(data.message) || t.leadDone;
            bubble("bot", text);
            remember("b", text);
            announce(text);
          });
        });
    } } }, t.escalate));
    if (!tools.firstChild) tools.hidden = true;

    // ── Proactive triggers ──
    var triggers = Array.isArray(config.proactive) ? config.proactive : [];
    triggers.forEach(function (raw, i) {
      var trig = obj(raw), key = str(trig.key || trig.id) || "trigger-" + (i + 1);
      var message = pick(trig.message, lang) || greeting;
      var path = str(trig.path);
      if (path && location.pathname.indexOf(path) !== 0) return;
      var seen = "alpinechat:" + SLUG + ":fired:" + key;
      if (load(seen)) return; // once per tab
      var fire = function () {
        if (load(seen) || !panel.hidden) return;
        save(seen, "1");
        fired.push(key);
        beacon("fire", key);
        teaser.textContent = message;
        teaser.hidden = false;
        teaser.setAttribute("data-trigger", key);
        announce(message);
        if (trig.open === true) toggle(true);
      };
      var delay = Number(trig.delay_s !== undefined ? trig.delay_s : trig.delay_seconds);
      var scrollAt = Number(trig.scroll_percent);
      if (delay >= 0) setTimeout(fire, Math.min(delay, 3600) * 1000);
      if (scrollAt > 0) window.addEventListener("scroll", function () {
        var max = document.documentElement.scrollHeight - innerHeight;
        if (max > 0 && scrollY / max * 100 >= scrollAt) fire();
      }, { passive: true });
      if (trig.exit_intent === true) document.addEventListener("mouseout", function (e) { if (!e.relatedTarget && e.clientY <= 0) fire(); });
      if (!(delay >= 0) && !(scrollAt > 0) && trig.exit_intent !== true) fire();
    });
    teaser.addEventListener("click", function () {
      var text = teaser.textContent;
      toggle(true);
      if (text && log.lastChild && log.lastChild.textContent.indexOf(text) < 0) bubble("bot", text);
    });
    if ("open" in script.dataset) toggle(true);
  }
})();
