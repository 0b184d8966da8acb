// The live view: new events of the conversation arrive as server-sent
// events and are added to the table as text, never as markup.
"use strict";
(function () {
  var table = document.getElementById("lines");
  var status = document.getElementById("live-status");
  if (!table || !table.dataset.events) return;
  var body = table.tBodies[0];
  var source = new EventSource(table.dataset.events);
  function cell(row, text, cls) {
    var td = row.insertCell(-1);
    td.textContent = text;
    if (cls) td.className = cls;
  }
  source.onopen = function () { status.textContent = "following new events"; };
  source.onerror = function () { status.textContent = "connection lost; retrying"; };
  source.addEventListener("line", function (e) {
    var l = JSON.parse(e.data);
    var row = body.insertRow(-1);
    row.className = (l.outgoing ? "out" : "in") + (l.filtered ? " filtered" : "");
    cell(row, l.time);
    cell(row, l.direction, "dir");
    cell(row, l.type);
    cell(row, l.text, "text");
    cell(row, l.filtered ? "filtered " + l.categories : l.categories, l.filtered ? "mark" : "");
    cell(row, l.client);
  });
})();
