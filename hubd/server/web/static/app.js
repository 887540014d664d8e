// hubd web catalog: the only script, loaded from the daemon itself (CSP: script-src 'self').
// It refreshes job progress on the operations page; everything else works without it.
"use strict";

function formatSize(n) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return i === 0 ? n + " B" : n.toFixed(1) + " " + units[i];
}

function updateJobs(table, jobs) {
  for (const job of jobs) {
    const row = table.querySelector('tr[data-job="' + job.id + '"]');
    if (!row) { continue; }
    row.querySelector(".state").textContent = job.state;
    row.querySelector(".err").textContent = job.error || "";
    const bar = row.querySelector("progress");
    bar.max = job.bytes_total || 1;
    bar.value = job.bytes_total ? job.bytes_done : (job.state === "done" ? 1 : 0);
    row.querySelector(".bytes").textContent =
      formatSize(job.bytes_done) + " / " + formatSize(job.bytes_total);
  }
}

function watchJobs() {
  const table = document.getElementById("jobs");
  if (!table) { return; }
  const poll = async () => {
    try {
      const answer = await fetch(table.dataset.live, { credentials: "same-origin" });
      if (answer.ok) { updateJobs(table, (await answer.json()).jobs); }
    } catch (_) { /* the daemon restarted: try again on the next tick */ }
  };
  setInterval(poll, 2000);
}

document.addEventListener("DOMContentLoaded", watchJobs);
