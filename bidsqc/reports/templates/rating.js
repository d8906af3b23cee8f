/* Ratings kept in the browser (localStorage), shared by the group page and the per-scan pages
   of one output folder, and exported as the TSV that bidsqc-train --labels reads. */
"use strict";
const BidsqcRatings = (function () {
  const meta = JSON.parse(document.getElementById("bidsqc-meta").textContent);
  const key = "bidsqc-ratings:" + meta.store;
  function load() {
    try { return JSON.parse(window.localStorage.getItem(key) || "{}"); } catch (e) { return {}; }
  }
  function save(all) { window.localStorage.setItem(key, JSON.stringify(all)); }
  function get(source) { return load()[source] || null; }
  function set(source, rating, artifact) {
    const all = load();
    if (rating === null) { delete all[source]; } else { all[source] = {rating: rating, artifact: artifact || ""}; }
    save(all);
  }
  function tsv() {
    const all = load();
    const clean = (s) => String(s).replace(/[\t\r\n]/g, " ");
    const lines = ["source_file\trating\tartifact"];
    Object.keys(all).sort().forEach(function (source) {
      lines.push([clean(source), clean(all[source].rating), clean(all[source].artifact || "n/a")].join("\t"));
    });
    return lines.join("\n") + "\n";
  }
  function exportTsv() {
    const blob = new Blob([tsv()], {type: "text/tab-separated-values"});
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = "ratings.tsv";
    document.body.appendChild(link);
    link.click();
    link.remove();
  }
  return {meta: meta, get: get, set: set, tsv: tsv, exportTsv: exportTsv, count: () => Object.keys(load()).length};
})();
