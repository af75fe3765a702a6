// The portal's pages: the device key made with Web Crypto (Ed25519, not extractable, kept in IndexedDB), and each page drawn from the node's answers.
"use strict";

const LEVENSGEBIEDEN = {
  "finances": ["Financiën", "geld, schulden, inkomen"],
  "work-education": ["Werk & opleiding", "werk, school, studie"],
  "daily-activities": ["Tijdsbesteding", "wat u overdag doet"],
  "housing": ["Huisvesting", "uw woning"],
  "domestic-relations": ["Huiselijke relaties", "uw gezin en huisgenoten"],
  "mental-health": ["Geestelijke gezondheid", "hoe u zich voelt, psychische hulp"],
  "physical-health": ["Lichamelijke gezondheid", "uw lichaam, ziekte, zorg"],
  "substance-use": ["Middelengebruik", "alcohol, drugs, medicijnen"],
  "basic-adl": ["Basale ADL", "ADL betekent: algemene dagelijkse levensverrichtingen. Basaal: zelf wassen, aankleden, eten"],
  "instrumental-adl": ["Instrumentele ADL", "ADL betekent: algemene dagelijkse levensverrichtingen. Instrumenteel: huishouden, boodschappen, post"],
  "social-network": ["Sociaal netwerk", "familie, vrienden, buren"],
  "participation": ["Maatschappelijke participatie", "meedoen in de buurt, vrijwilligerswerk"],
  "justice": ["Justitie", "politie, rechter, reclassering"],
};
const SOORTEN = {
  household: "Huishouden", goal: "Doel", action: "Actie", agreement: "Afspraak", evaluation: "Evaluatie",
  signal: "Signaal", handover: "Overdracht", note: "Notitie",
};
// Where an item or a consent stands, in words.
const STANDEN = {
  proposed: "voorgesteld", active: "loopt", achieved: "bereikt", "not-achieved": "niet bereikt", cancelled: "gestopt",
  planned: "gepland", "in-progress": "bezig", "on-hold": "staat even stil", completed: "klaar",
};
const TOESTEMMING_STANDEN = { active: "geldt nu", withdrawn: "ingetrokken", expired: "verlopen", pending: "gaat later in" };
// What was done, as the end of "Op ... heeft ... van ...".
const HANDELINGEN = {
  "read": "uw gegevens bekeken",
  "create": "iets toegevoegd",
  "update": "iets veranderd",
  "consent-record": "een toestemming vastgelegd",
  "consent-withdraw": "een toestemming ingetrokken",
  "purge": "gegevens gewist (omdat een toestemming was ingetrokken, de bewaartermijn voorbij was of u erom vroeg)",
  "export": "alles gedownload",
};

// ---- small helpers ----
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "tekst") e.textContent = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c) e.append(c);
  return e;
}
const $ = (id) => document.getElementById(id);
function hex(buffer) { return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join(""); }
function toon(fout, melding) {
  $("fout").textContent = fout || "";
  $("melding").textContent = melding || "";
}
function domeinNaam(d) { return d === "*" ? "Alle levensgebieden" : (LEVENSGEBIEDEN[d] ? LEVENSGEBIEDEN[d][0] : d); }
function datum(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return d.toLocaleDateString("nl-NL", { day: "numeric", month: "long", year: "numeric", timeZone: "Europe/Amsterdam" });
}
function tijd(iso) {
  return new Date(iso).toLocaleTimeString("nl-NL", { hour: "2-digit", minute: "2-digit", timeZone: "Europe/Amsterdam" });
}

async function vraag(pad, opties) {
  const o = Object.assign({ credentials: "same-origin", headers: {} }, opties || {});
  if (o.json !== undefined) {
    o.method = o.method || "POST";
    o.headers["Content-Type"] = "application/json";
    o.body = JSON.stringify(o.json);
    delete o.json;
  }
  const antwoord = await fetch(pad, o);
  let inhoud = {};
  try { inhoud = await antwoord.json(); } catch (e) { inhoud = {}; }
  if (antwoord.status === 401 && document.body.dataset.pagina !== "start") { location.href = "/"; throw new Error("geen sessie"); }
  if (!antwoord.ok) { const f = new Error(inhoud.bericht || "Er ging iets mis."); f.status = antwoord.status; throw f; }
  return inhoud;
}

// ---- the device key, in IndexedDB (the private key never leaves the browser) ----
function db() {
  return new Promise((ok, nee) => {
    const r = indexedDB.open("kring-portaal", 1);
    r.onupgradeneeded = () => r.result.createObjectStore("sleutels");
    r.onsuccess = () => ok(r.result);
    r.onerror = () => nee(r.error);
  });
}
async function bewaar(waarde) {
  const d = await db();
  return new Promise((ok, nee) => {
    const t = d.transaction("sleutels", "readwrite");
    t.objectStore("sleutels").put(waarde, "apparaat");
    t.oncomplete = () => ok();
    t.onerror = () => nee(t.error);
  });
}
async function lees() {
  const d = await db();
  return new Promise((ok, nee) => {
    const r = d.transaction("sleutels").objectStore("sleutels").get("apparaat");
    r.onsuccess = () => ok(r.result || null);
    r.onerror = () => nee(r.error);
  });
}
async function onderteken(sleutels, tekst) {
  return hex(await crypto.subtle.sign({ name: "Ed25519" }, sleutels.privateKey, new TextEncoder().encode(tekst)));
}

// ---- start: enrol with a code, or log in with this device ----
async function startPagina(plek) {
  const opgeslagen = await lees().catch(() => null);
  if (opgeslagen) {
    const knop = el("button", { type: "button", id: "inloggen", tekst: "Inloggen met dit apparaat" });
    knop.addEventListener("click", () => inloggen(opgeslagen));
    plek.append(el("h2", { tekst: "U heeft dit apparaat al gekoppeld" }),
      el("p", { tekst: "U hoeft geen wachtwoord te onthouden. Dit apparaat bewijst wie u bent." }), knop);
  }
  const invoer = el("input", { type: "text", id: "code", name: "code", autocomplete: "off", autocapitalize: "characters",
    spellcheck: "false", "aria-describedby": "code-uitleg" });
  const form = el("form", { id: "koppelen", novalidate: true },
    el("h2", { tekst: opgeslagen ? "Een ander dossier of een nieuwe code?" : "Koppel dit apparaat aan uw dossier" }),
    el("p", { tekst: "Uw regisseur heeft u een code op papier gegeven. Typ die code hieronder over. Streepjes en spaties mogen, hoofdletters of kleine letters maakt niet uit." }),
    el("label", { for: "code", tekst: "Uw code van de regisseur" }),
    el("p", { class: "hint", id: "code-uitleg", tekst: "Bijvoorbeeld: ABCD-EFGH-JKMN-PQRS" }),
    invoer, el("p", {}, el("button", { type: "submit", tekst: "Apparaat koppelen" })));
  form.addEventListener("submit", (e) => { e.preventDefault(); koppelen(invoer.value); });
  plek.append(form);
}

async function koppelen(code) {
  toon("", "Even geduld...");
  try {
    const aanbod = await vraag("/api/code", { json: { code } });
    const sleutels = await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
    const publiek = hex(await crypto.subtle.exportKey("raw", sleutels.publicKey));
    const verklaring = "kring burgerverklaring v1\nhandeling: sleutel koppelen\nzaak: " + aanbod.zaak +
      "\nuitnodiging: " + aanbod.uitnodiging + "\nsleutel: " + publiek + "\n";
    const handtekening = await onderteken(sleutels, verklaring);
    const klaar = await vraag("/api/koppelen", { json: { code, sleutel: publiek, handtekening } });
    await bewaar({ sleutels, zaak: klaar.zaak, sleutel: klaar.sleutel });
    location.href = "/mijn-plan";
  } catch (f) {
    toon(f.message, "");
    $("code").focus();
  }
}

async function inloggen(opgeslagen) {
  toon("", "Even geduld...");
  try {
    const u = await vraag("/api/uitdaging");
    const tekst = "kring burgerverklaring v1\nhandeling: inloggen\norganisatie: " + u.organisatie + "\nuitdaging: " + u.uitdaging + "\n";
    const handtekening = await onderteken(opgeslagen.sleutels, tekst);
    await vraag("/api/inloggen", { json: { zaak: opgeslagen.zaak, sleutel: opgeslagen.sleutel, uitdaging: u.uitdaging, handtekening } });
    location.href = "/mijn-plan";
  } catch (f) {
    toon(f.message, "");
  }
}

// ---- Mijn plan ----
function hoofdtekst(item) {
  const d = item.data || {};
  if (item.kind === "household") return "Leden van het huishouden: " + ((d.members || []).length);
  return d.description || d.what || d.text || d.outcome || d.concern || d.reason || "";
}
function planLijst(plan, namen) {
  const lijst = el("ul", {});
  for (const item of plan.items || []) {
    const kop = (SOORTEN[item.kind] || item.kind) + (item.domain ? " - " + domeinNaam(item.domain) : "");
    const regel = el("li", { class: "kaart" }, el("h3", { tekst: kop }), el("p", { tekst: hoofdtekst(item) }));
    if (item.data && item.data.status) regel.append(el("p", { class: "hint", tekst: "Stand: " + (STANDEN[item.data.status] || item.data.status) }));
    if (item.author) regel.append(el("p", { class: "hint", tekst: "Geschreven door: " + (namen[item.author] || item.author) }));
    lijst.append(regel);
  }
  if (!lijst.children.length) lijst.append(el("li", { tekst: "Er staat nog niets in uw plan." }));
  return lijst;
}
function regisseurBlok(plan, namen) {
  const r = plan.regisseur || {};
  const org = namen[r.org] || r.org || "onbekend";
  return el("section", { "aria-labelledby": "regisseur-kop" },
    el("h2", { id: "regisseur-kop", tekst: "Uw regisseur" }),
    el("p", { tekst: r.person ? r.person + " van " + org + " houdt het overzicht over uw plan." : org + " houdt het overzicht over uw plan." }),
    el("p", { tekst: "Heeft u vragen over uw plan? Neem contact op met " + (r.person || "uw regisseur") + " bij " + org + "." }));
}
// Why a plan was closed, as the end of "De reden: ...".
const AFSLUITREDENEN = {
  "goals-reached": "de doelen zijn bereikt.", moved: "u bent verhuisd.", declined: "u wilde de hulp niet meer.",
  "withdrawn-request": "u heeft uw aanvraag ingetrokken.", deceased: "overlijden.", other: "een andere reden.",
};
function afsluitBlok(plan, namen) {
  const c = plan.closed;
  if (!c) return null;
  const org = namen[c.by] || c.by;
  return el("section", { "aria-labelledby": "afgesloten-kop", id: "afgesloten" },
    el("h2", { id: "afgesloten-kop", tekst: "Uw plan is afgesloten" }),
    el("p", { tekst: org + " heeft uw plan afgesloten op " + datum(c.since) + ". De reden: " + (AFSLUITREDENEN[c.reason] || "een andere reden.") }),
    el("p", { tekst: "Er kan niets meer bij. U kunt uw plan nog wel bekijken." }),
    el("p", { tekst: "Elke organisatie bewaart uw gegevens niet langer dan de wet zegt. Daarna worden ze gewist." }));
}
function verwijderBlok(verzoeken, namen) {
  if (!verzoeken || !verzoeken.length) return null;
  const blok = el("section", { "aria-labelledby": "wissen-kop", id: "wissen" }, el("h2", { id: "wissen-kop", tekst: "Uw vraag om gegevens te wissen" }));
  for (const v of verzoeken) {
    blok.append(el("p", { tekst: "U heeft gevraagd om uw gegevens te wissen. Dat is vastgelegd op " + datum(v.vastgelegd) + ". Hieronder ziet u wat elke organisatie heeft gedaan." }));
    const lijst = el("ul", {});
    for (const a of v.antwoorden) {
      const naam = namen[a.organisatie] || a.organisatie;
      const regel = el("li", { class: "kaart" }, el("h3", { tekst: naam }),
        el("p", { tekst: a.gewist === 1 ? "Heeft 1 gegeven gewist." : "Heeft " + a.gewist + " gegevens gewist." }));
      if (a.bewaard > 0)
        regel.append(el("p", { tekst: "Moet " + a.bewaard + (a.bewaard === 1 ? " gegeven" : " gegevens") + " nog bewaren, omdat de wet dat verplicht (" + a.regel + "). Daarna worden ze gewist." }));
      lijst.append(regel);
    }
    for (const org of v.wacht_op || [])
      lijst.append(el("li", { class: "kaart" }, el("h3", { tekst: namen[org] || org }), el("p", { tekst: "Heeft nog niet geantwoord." })));
    blok.append(lijst);
  }
  return blok;
}
async function planPagina(plek) {
  const a = await vraag("/api/plan");
  const blokken = [regisseurBlok(a.plan, a.namen), afsluitBlok(a.plan, a.namen), verwijderBlok(a.verwijderverzoeken, a.namen),
    el("section", { "aria-labelledby": "plan-kop" }, el("h2", { id: "plan-kop", tekst: "Wat er in uw plan staat" }), planLijst(a.plan, a.namen))];
  plek.replaceChildren(...blokken.filter((b) => b));
}

// ---- Wie mag wat zien ----
async function toegangPagina(plek) {
  const a = await vraag("/api/toestemmingen");
  const namen = a.namen;
  const kinderen = [el("p", { tekst: "Hier ziet u welke organisatie welk deel van uw plan mag zien. U kunt een toestemming altijd intrekken. Dat is net zo makkelijk als toestemming geven." })];
  const perOrg = {};
  for (const t of a.toestemmingen) (perOrg[t.organisatie] = perOrg[t.organisatie] || []).push(t);
  const orgs = Object.keys(perOrg).sort();
  if (!orgs.length) kinderen.push(el("p", { tekst: "Nog geen enkele organisatie mag iets van uw plan zien." }));
  for (const org of orgs) {
    const naam = namen[org] || org;
    const sectie = el("section", { class: "kaart" }, el("h2", { tekst: naam }));
    for (const t of perOrg[org]) {
      const gebieden = t.levensgebieden.map(domeinNaam).join(", ");
      const blok = el("div", {},
        el("p", { tekst: "Mag zien: " + gebieden }),
        el("p", { tekst: "Waarom: " + t.doel }),
        el("p", { tekst: t.tot ? "Tot en met: " + datum(t.tot) : "Tot wanneer: geen einddatum" }),
        el("p", { tekst: "Stand: " + (TOESTEMMING_STANDEN[t.status] || t.status) }));
      if (t.status === "active" || t.status === "pending") {
        const knop = el("button", { type: "button", class: "rustig", tekst: "Toestemming intrekken",
          "aria-label": "Toestemming intrekken voor " + naam + " (" + gebieden + ")" });
        knop.addEventListener("click", () => intrekken(t.id, naam, gebieden));
        blok.append(knop);
      }
      sectie.append(blok);
    }
    kinderen.push(sectie);
  }
  if (a.mag_geven) kinderen.push(geefFormulier(a.organisaties));
  if (a.mag_geven) kinderen.push(await apparatenBlok());
  else kinderen.push(el("p", { tekst: "Toestemming geven doet u in het portaal van " + (namen[a.regie] || a.regie) + ". Intrekken kan ook hier." }));
  plek.replaceChildren(...kinderen);
}

// Your devices: turn off one you lost, with a signature from this one.
async function apparatenBlok() {
  const a = await vraag("/api/apparaten");
  const lijst = el("ul", {});
  a.apparaten.forEach((ap, i) => {
    const naam = "Apparaat " + (i + 1) + (ap.dit_apparaat ? " (dit apparaat)" : "");
    const regel = el("li", { tekst: naam + ", gekoppeld op " + datum(ap.gekoppeld) + (ap.uitgezet ? ". Staat uit." : ". ") });
    if (!ap.uitgezet && !ap.dit_apparaat) {
      const knop = el("button", { type: "button", class: "rustig", tekst: "Apparaat uitzetten", "aria-label": "Apparaat uitzetten: " + naam });
      knop.addEventListener("click", () => tekenEnStuur("/api/apparaten/" + ap.id + "/uitzetten/concept", {},
        naam + " staat nu uit. Daarmee kan niemand meer iets voor u regelen.",
        "U zet " + naam + " uit. Met dat apparaat kan daarna niemand meer inloggen of iets voor u regelen.",
        ["handeling: sleutel intrekken", "ingetrokken sleutel: " + ap.id]));
      regel.append(knop);
    }
    lijst.append(regel);
  });
  return el("section", { "aria-labelledby": "apparaten-kop" }, el("h2", { id: "apparaten-kop", tekst: "Uw apparaten" }),
    el("p", { tekst: "Bent u een telefoon of computer kwijt? Zet dat apparaat dan hier uit. Of bel uw regisseur." }), lijst);
}

function geefFormulier(organisaties) {
  const keuze = el("select", { id: "organisatie", name: "organisatie" });
  for (const o of organisaties) keuze.append(el("option", { value: o.org, tekst: o.naam }));
  const gebieden = el("fieldset", {}, el("legend", { tekst: "Welke delen van uw plan mag deze organisatie zien?" }));
  for (const [slug, [naam, uitleg]] of Object.entries(LEVENSGEBIEDEN)) {
    const id = "gebied-" + slug;
    gebieden.append(el("div", { class: "keuze" }, el("input", { type: "checkbox", id, name: "levensgebied", value: slug, "aria-describedby": id + "-uitleg" }),
      el("div", {}, el("label", { for: id, tekst: naam }), el("p", { class: "hint", id: id + "-uitleg", tekst: uitleg }))));
  }
  const doel = el("textarea", { id: "doel", name: "doel", rows: "3" });
  const tot = el("input", { type: "date", id: "tot", name: "tot", "aria-describedby": "tot-uitleg" });
  const form = el("form", { id: "geven", novalidate: true },
    el("h2", { tekst: "Toestemming geven" }),
    el("label", { for: "organisatie", tekst: "Welke organisatie?" }), keuze, gebieden,
    el("label", { for: "doel", tekst: "Waarvoor mag de organisatie dit gebruiken?" }), doel,
    el("label", { for: "tot", tekst: "Tot wanneer? (mag leeg blijven)" }),
    el("p", { class: "hint", id: "tot-uitleg", tekst: "Laat u dit leeg, dan geldt de toestemming tot u die intrekt." }), tot,
    el("p", {}, el("button", { type: "submit", tekst: "Ja, toestemming geven" })));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const gekozen = Array.from(form.querySelectorAll("input[name=levensgebied]:checked"), (c) => c.value);
    const naam = keuze.options[keuze.selectedIndex] ? keuze.options[keuze.selectedIndex].text : keuze.value;
    await tekenEnStuur("/api/toestemmingen/concept",
      { organisatie: keuze.value, levensgebieden: gekozen, doel: doel.value, tot: tot.value },
      "Uw toestemming is vastgelegd.",
      naam + " mag zien: " + gekozen.map(domeinNaam).join(", ") + ". Waarvoor: " + doel.value + ". " +
        (tot.value ? "Tot en met " + datum(tot.value + "T12:00:00Z") + "." : "Zonder einddatum."),
      ["handeling: toestemming geven", "organisatie: " + keuze.value,
       "levensgebieden: " + gekozen.slice().sort().join(","), "doel: " + eenRegel(doel.value)]);
  });
  return form;
}

// A value as the statement writes it: backslash, line feed and tab escaped (docs/protocol.md, "Citizen statements").
function eenRegel(v) { return String(v).replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/\t/g, "\\t"); }

// Signs a draft only when its statement says exactly what the citizen chose
// (`moetBevatten`: lines it must hold), after the citizen confirmed it.
async function tekenEnStuur(pad, gegevens, gelukt, samenvatting, moetBevatten) {
  toon("", "Even geduld...");
  try {
    const opgeslagen = await lees();
    if (!opgeslagen) throw new Error("Dit apparaat is niet gekoppeld. Ga naar de startpagina.");
    const concept = await vraag(pad, { json: gegevens });
    const regels = concept.verklaring.split("\n");
    if (!moetBevatten.every((r) => regels.includes(r)))
      throw new Error("De gegevens kloppen niet met wat u koos. Er is niets ondertekend.");
    toon("", "");
    if (!(await bevestig(samenvatting, concept.verklaring))) {
      toon("", "Er is niets veranderd.");
      return;
    }
    const handtekening = await onderteken(opgeslagen.sleutels, concept.verklaring);
    await vraag("/api/ondertekenen", { json: { concept: concept.concept, handtekening } });
    await toegangPagina($("pagina"));
    toon("", gelukt);
  } catch (f) {
    toon(f.message, "");
  }
  $("inhoud").focus();
}

// Asks "Klopt dit?" with the summary, and the exact statement to read if you want.
function bevestig(samenvatting, verklaring) {
  return new Promise((klaar) => {
    const ja = el("button", { type: "button", id: "bevestigen", tekst: "Ja, klopt. Ondertekenen" });
    const nee = el("button", { type: "button", class: "rustig", tekst: "Nee, terug" });
    const vak = el("section", { class: "kaart", id: "bevestiging", "aria-labelledby": "bevestiging-kop", tabindex: "-1" },
      el("h2", { id: "bevestiging-kop", tekst: "Klopt dit?" }), el("p", { tekst: samenvatting }),
      el("details", {}, el("summary", { tekst: "Wat u precies ondertekent" }), el("pre", { tekst: verklaring })),
      el("p", {}, ja, " ", nee));
    const weg = (antwoord) => { vak.remove(); klaar(antwoord); };
    ja.addEventListener("click", () => weg(true));
    nee.addEventListener("click", () => weg(false));
    $("pagina").prepend(vak);
    vak.focus();
  });
}

function intrekken(id, naam, gebieden) {
  return tekenEnStuur("/api/toestemmingen/" + id + "/intrekken/concept", {},
    "De toestemming voor " + naam + " is ingetrokken. Deze organisatie krijgt niets meer te zien en wist wat zij had.",
    "U trekt de toestemming in voor " + naam + " (" + gebieden + ").",
    ["handeling: toestemming intrekken", "toestemming: " + id]);
}

// ---- Wie heeft gekeken ----
function zin(r, namen) {
  const org = namen[r.organisatie] || r.organisatie;
  const wie = r.rol === "burger" ? "u zelf (via " + org + ")"
    : (r.wie || "iemand") + (r.rol ? " (" + r.rol + ")" : "") + " van " + org + (r.namens ? ", namens " + r.namens + "," : "");
  const wat = HANDELINGEN[r.handeling] || r.handeling;
  const mislukt = r.uitkomst === "success" ? "" : (r.uitkomst === "denied" ? " Dit mocht niet en is geweigerd." : " Dit is mislukt.");
  return "Op " + datum(r.tijd) + " om " + tijd(r.tijd) + " heeft " + wie + " " + wat + "." + mislukt;
}
function logboekLijst(regels, namen) {
  const lijst = el("ul", { class: "logboek" });
  for (const r of regels.slice().reverse()) lijst.append(el("li", { tekst: zin(r, namen) }));
  if (!regels.length) lijst.append(el("li", { tekst: "Nog niemand heeft uw gegevens bekeken." }));
  return lijst;
}
async function gekekenPagina(plek) {
  const a = await vraag("/api/logboek");
  plek.replaceChildren(el("p", { tekst: "Hier ziet u wie uw gegevens heeft bekeken of veranderd, bij alle organisaties. Het nieuwste staat bovenaan." }),
    logboekLijst(a.regels, a.namen));
}

// ---- Alles downloaden ----
async function downloadPagina(plek) {
  const a = await vraag("/api/download");
  const link = el("a", { class: "knop", href: "/api/download", download: "mijn-gegevens.json", tekst: "Download alles als één bestand" });
  const consents = el("ul", {});
  for (const t of a.toestemmingen)
    consents.append(el("li", { tekst: (a.namen[t.organisatie] || t.organisatie) + ": " + t.levensgebieden.map(domeinNaam).join(", ") + ". Waarom: " + t.doel + ". Stand: " + (TOESTEMMING_STANDEN[t.status] || t.status) + "." }));
  if (!a.toestemmingen.length) consents.append(el("li", { tekst: "Geen toestemmingen." }));
  plek.replaceChildren(
    el("p", { tekst: "U mag al uw gegevens hebben. Het bestand bevat uw plan, uw toestemmingen en wie er heeft gekeken. Hieronder staat hetzelfde om te lezen." }),
    el("p", {}, link),
    regisseurBlok(a.plan, a.namen),
    el("h2", { tekst: "Uw plan" }), planLijst(a.plan, a.namen),
    el("h2", { tekst: "Uw toestemmingen" }), consents,
    el("h2", { tekst: "Wie heeft gekeken" }), logboekLijst(a.logboek.map((r) => Object.assign({}, r)), a.namen));
}

// ---- every page ----
async function start() {
  const pagina = document.body.dataset.pagina;
  const plek = $("pagina");
  plek.replaceChildren();
  for (const a of document.querySelectorAll("#menu a"))
    if (a.getAttribute("href") === location.pathname) a.setAttribute("aria-current", "page");
  if (pagina !== "start") {
    $("menu").hidden = false;
    $("uitloggen").addEventListener("click", async () => {
      await vraag("/api/uitloggen", { json: {} }).catch(() => {});
      location.href = "/";
    });
  }
  try {
    if (pagina === "start") await startPagina(plek);
    else if (pagina === "plan") await planPagina(plek);
    else if (pagina === "toegang") await toegangPagina(plek);
    else if (pagina === "gekeken") await gekekenPagina(plek);
    else if (pagina === "downloaden") await downloadPagina(plek);
  } catch (f) {
    toon(f.message, "");
  }
  document.body.dataset.klaar = "ja";
}
document.addEventListener("DOMContentLoaded", start);
