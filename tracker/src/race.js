/* race.js: Racetrack's first-party tracker, readable source (the README's "On your website" section
 * documents its attributes and API). build.mjs minifies it twice: FULL = false gives race.core.js
 * (page views on load, SPA navigation and back-forward cache restores, the landing page's referrer
 * and campaign, batching and the beacon, the anonymous id, consent, GPC/DNT, the JS API and its
 * queue); FULL = true gives race.js, which adds outbound-link and download clicks, data-race-*
 * tagging, and engaged time and scroll depth on pagehide.
 *
 * Messages are Segment's (page, track, identify), posted to Racetrack's /v1/batch as text/plain
 * with the write key in the body (sendBeacon cannot set headers), fetch with keepalive if the
 * beacon is refused. Rules: never break the page (every entry point swallows its errors), and no
 * global but window.race. */

// Wraps every entry point (listeners, API, history hooks): an error in the tracker stays in it.
const safe = (fn) =>
  function () {
    try {
      return fn.apply(this, arguments);
    } catch (e) {}
  };

const w = window;
const d = document;
const nav = navigator;
const loc = location;
const listen = (target, type, fn, options) => target.addEventListener(type, safe(fn), options);

// a page without the script element (an odd embed) finds no key: the tracker then sends nothing
const script = d.currentScript || d.querySelector("script[data-key]") || { getAttribute() {} };
const attr = (name) => script.getAttribute("data-" + name);
const isOn = (name) => /^(true|on|yes|1)$/.test(attr(name));
// features are on unless their attribute says false (data-spa="false")
const auto = (name) => !/^(false|off|no|0)$/.test(attr(name));

const key = attr("key");
const endpoint = (attr("api") || (script.src && new URL(script.src).origin)) + "/v1/batch";

// Segment's analytics.js keys and encoding (a JSON string), so a site moving over keeps its visitors
const ANONYMOUS_KEY = "ajs_anonymous_id";
const USER_KEY = "ajs_user_id";
const load = (name) => {
  try {
    const value = localStorage.getItem(name);
    return value && value[0] == '"' ? JSON.parse(value) : value;
  } catch (e) {}
};
const save = (name, value) => {
  try {
    value ? localStorage.setItem(name, JSON.stringify(value)) : localStorage.removeItem(name);
  } catch (e) {}
};
const uuid = () => {
  try {
    return crypto.randomUUID();
  } catch (e) {
    // insecure (http) pages have no randomUUID
    return Date.now().toString(36) + "-" + Math.random().toString(36).slice(2);
  }
};
const now = () => new Date().toISOString();

let anonymousId = load(ANONYMOUS_KEY);
let userId = load(USER_KEY);
// 1: consent given; 0: not asked yet, messages wait in memory and no id is stored; -1: refused,
// messages are dropped. With data-consent="required" a stored id means consent was given before.
let consent = attr("consent") == "required" && !anonymousId ? 0 : 1;
const blocked =
  !key ||
  (nav.webdriver && !isOn("webdriver")) ||
  (isOn("do-not-track") && (nav.globalPrivacyControl || nav.doNotTrack == "1" || w.doNotTrack == "1"));

let queue = [];
let timer = 0;
let lastUrl = "";
const pageOf = (referrer) => ({
  url: loc.href,
  path: loc.pathname,
  search: loc.search,
  title: d.title,
  referrer: referrer || "",
});
let page = pageOf(d.referrer);

function send(message, atOnce) {
  if (blocked || consent < 0) return;
  message.messageId = uuid(); // the server stores a message once: a resent batch is deduplicated
  message.timestamp = now();
  if (userId) message.userId = userId;
  message.context = message.context || { page };
  queue.push(message);
  // what happens within a moment goes in one batch; clicks go at once (the page may be leaving)
  if (atOnce || queue.length > 9) flush();
  else timer = timer || setTimeout(safe(flush), 500);
}

function flush() {
  clearTimeout(timer);
  timer = 0;
  if (consent < 1 || !queue.length) return;
  if (!anonymousId) save(ANONYMOUS_KEY, (anonymousId = uuid()));
  if (userId) save(USER_KEY, userId);
  for (const message of queue) message.anonymousId = anonymousId;
  const body = JSON.stringify({
    writeKey: key,
    sentAt: now(), // lets the server correct the client's clock
    context: { userAgent: nav.userAgent, library: { name: "race.js", version: VERSION } },
    batch: queue,
  });
  queue = [];
  if (!(nav.sendBeacon && nav.sendBeacon(endpoint, body))) {
    fetch(endpoint, { method: "POST", body, keepalive: true, credentials: "omit" }).catch(() => {});
  }
}

// UTM parameters and ad click ids of the page's URL (the landing page's decide the session's channel)
function campaignOf(search) {
  const campaign = {};
  new URLSearchParams(search).forEach((value, name) => {
    if (!name.indexOf("utm_")) campaign[name == "utm_campaign" ? "name" : name.slice(4)] = value;
    else if (FULL && /^(gclid|[gw]braid|dclid|msclkid|fbclid|ttclid|twclid|li_fat_id|yclid)$/.test(name)) campaign[name] = value;
  });
  // Google's and Microsoft's auto-tagging mark paid search without any utm_medium
  if (FULL && !campaign.medium && (campaign.gclid || campaign.gbraid || campaign.wbraid || campaign.msclkid)) {
    campaign.medium = "cpc";
    campaign.source = campaign.source || (campaign.msclkid ? "bing" : "google");
  }
  return campaign;
}

function trackPage(referrer, name, properties) {
  if (FULL) engagement(); // of the page being left
  lastUrl = loc.href;
  page = pageOf(referrer);
  send({ type: "page", name, properties: Object.assign({}, page, properties), context: { page, campaign: campaignOf(loc.search) } });
  if (FULL) startEngagement();
}

// an automatic page view: once per URL (replaceState with the same URL is no navigation)
const strip = (url) => (auto("hash") ? url : url.split("#")[0]);
const navigated = safe(() => {
  if (strip(loc.href) != strip(lastUrl)) trackPage(lastUrl);
});

// ------------------------------------------------------------------ full build only

let engagedMs = 0;
let visibleSince = 0;
let depth = 0;
const FILES = /\.(pdf|zip|rar|7z|gz|tgz|dmg|exe|msi|pkg|deb|rpm|apk|iso|csv|xlsx?|docx?|pptx?|od[tsp]|rtf|epub|mp3|mp4|mov|wav)$/i;

function scrolled() {
  const height = d.documentElement.scrollHeight;
  depth = Math.max(depth, Math.min(100, Math.round(((w.scrollY + w.innerHeight) / height) * 100) || 0));
}

function startEngagement() {
  engagedMs = depth = 0;
  visibleSince = d.visibilityState == "visible" ? Date.now() : 0;
  scrolled();
}

// Sent only after 10 s of visible time, so a visit that leaves at once stays a one-event bounce.
function engagement() {
  const ms = engagedMs + (visibleSince && Date.now() - visibleSince);
  engagedMs = visibleSince = 0;
  if (ms >= 1e4 && auto("engagement")) {
    send({
      type: "track",
      event: "Page Engaged",
      properties: { engaged_seconds: Math.round(ms / 1000), scroll_depth: depth },
      context: { page },
    });
  }
}

// data-race-goal="signup" data-race-revenue="49.90" data-race-order-id="A1" data-race-props-plan="pro"
function tagged(el) {
  const get = (name) => el.getAttribute("data-race-" + name);
  const properties = {};
  for (const a of el.attributes) {
    if (!a.name.indexOf("data-race-props-")) properties[a.name.slice(16)] = a.value && !isNaN(a.value) ? +a.value : a.value;
  }
  if (get("revenue")) properties.revenue = +get("revenue");
  if (get("order-id")) properties.order_id = get("order-id");
  send({ type: "track", event: get("goal"), properties }, 1);
}

function clicked(e) {
  if (e.type == "auxclick" && e.button != 1) return; // a middle click opens a link too
  const el = e.target.closest ? e.target : e.target.parentElement;
  const goal = el.closest("[data-race-goal]");
  if (goal && goal.tagName != "FORM" && auto("tags")) tagged(goal);
  const link = el.closest("a[href]");
  if (!link) return;
  const url = new URL(link.href, loc.href);
  const properties = { url: url.href };
  if (auto("downloads") && (link.hasAttribute("download") || FILES.test(url.pathname))) {
    send({ type: "track", event: "File Downloaded", properties }, 1);
  } else if (auto("outbound") && url.host != loc.host && /^http/.test(url.protocol)) {
    send({ type: "track", event: "Outbound Link Clicked", properties }, 1);
  }
}

// ------------------------------------------------------------------ start

const race = safe((method, ...args) => race[method](...args)); // race("track", ...) as the queue stub calls it
race.track = safe((event, properties) => send({ type: "track", event, properties: properties || {} }));
race.page = safe((name, properties) => trackPage(lastUrl || d.referrer, name, properties));
race.identify = safe((id, traits) => {
  userId = "" + id;
  send({ type: "identify", traits: traits || {} });
});
race.order = safe((order) => race.track("Order Completed", order));
race.consent = safe((given) => {
  consent = given ? 1 : -1;
  if (given) return flush();
  queue = [];
  anonymousId = userId = null;
  save(ANONYMOUS_KEY);
  save(USER_KEY);
});
const queued = (w.race && w.race.q) || [];
w.race = race;

safe(() => {
  if (!auto("pageviews")) return;
  if (auto("spa")) {
    for (const method of ["pushState", "replaceState"]) {
      const original = history[method];
      history[method] = function () {
        const result = original.apply(this, arguments);
        navigated();
        return result;
      };
    }
    listen(w, "popstate", navigated);
    listen(w, "hashchange", navigated);
  }
  listen(w, "pageshow", (e) => e.persisted && trackPage(d.referrer)); // restored from the back-forward cache
  trackPage(d.referrer);
})();
for (const args of queued) race(...args);

listen(d, "visibilitychange", () => {
  if (FULL) {
    if (d.visibilityState == "visible") return (visibleSince = Date.now());
    engagedMs += visibleSince && Date.now() - visibleSince;
    visibleSince = 0;
  }
  flush();
});
listen(w, "pagehide", () => {
  if (FULL) engagement();
  flush();
});

if (FULL) {
  listen(w, "scroll", scrolled, { passive: true });
  listen(d, "click", clicked, true);
  listen(d, "auxclick", clicked, true);
  listen(d, "submit", (e) => e.target.hasAttribute("data-race-goal") && auto("tags") && tagged(e.target), true);
}
