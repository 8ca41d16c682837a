// The issue form's label picker: a group of checkboxes (what the server
// renders, and all there is without JavaScript) given a filter box, arrow
// keys between the labels and a "Clear selection" button.
//
// Keys: type in the filter to narrow the list; ArrowDown moves into it,
// ArrowUp/ArrowDown between the labels shown, Home/End to the first/last,
// Space ticks one, Escape goes back to the filter (and there empties it);
// Enter in the filter ticks the first label shown instead of sending the form.
(function () {
  "use strict";

  function enhance(picker) {
    var list = picker.querySelector(".label-options");
    var items = Array.prototype.slice.call(picker.querySelectorAll(".label-option"));
    if (!list || !items.length) return;
    list.id = list.id || picker.id + "-options";

    var bar = document.createElement("div");
    bar.className = "label-picker-bar";
    var filter = document.createElement("input");
    filter.type = "search";
    filter.className = "label-filter";
    filter.placeholder = "Filter labels";
    filter.setAttribute("aria-label", "Filter labels");
    filter.setAttribute("aria-controls", list.id);
    filter.autocomplete = "off";
    var count = document.createElement("span");
    count.className = "label-count muted";
    var clear = document.createElement("button");
    clear.type = "button";
    clear.className = "link label-clear";
    clear.textContent = "Clear selection";
    var status = document.createElement("p");
    status.className = "visually-hidden";
    status.setAttribute("role", "status");
    bar.appendChild(filter);
    bar.appendChild(count);
    bar.appendChild(clear);
    picker.insertBefore(bar, list);
    picker.appendChild(status);
    picker.classList.add("enhanced");

    function boxes() {
      return items.filter(function (li) { return !li.hidden; })
        .map(function (li) { return li.querySelector("input[type=checkbox]"); });
    }

    function checkedCount() {
      return picker.querySelectorAll(".label-option input:checked").length;
    }

    function showCount() {
      var n = checkedCount();
      count.textContent = n ? n + " selected" : "None selected";
      clear.disabled = n === 0;
    }

    function applyFilter() {
      var q = filter.value.trim().toLowerCase();
      var shown = 0;
      items.forEach(function (li) {
        li.hidden = q !== "" && li.getAttribute("data-name").indexOf(q) === -1;
        if (!li.hidden) shown += 1;
      });
      status.textContent = q === "" ? "" :
        (shown === 1 ? "1 label matches" : shown + " labels match");
    }

    filter.addEventListener("input", applyFilter);
    filter.addEventListener("keydown", function (event) {
      var shown = boxes();
      if (event.key === "ArrowDown" && shown.length) {
        event.preventDefault();
        shown[0].focus();
      } else if (event.key === "Enter") {
        event.preventDefault();  // never sends the form from here
        if (shown.length) {
          shown[0].click();
        }
      } else if (event.key === "Escape" && filter.value) {
        event.preventDefault();
        filter.value = "";
        applyFilter();
      }
    });

    list.addEventListener("keydown", function (event) {
      var shown = boxes();
      var at = shown.indexOf(event.target);
      if (at === -1) return;
      var next = null;
      if (event.key === "ArrowDown") next = shown[Math.min(at + 1, shown.length - 1)];
      else if (event.key === "ArrowUp") next = at === 0 ? filter : shown[at - 1];
      else if (event.key === "Home") next = shown[0];
      else if (event.key === "End") next = shown[shown.length - 1];
      else if (event.key === "Escape") next = filter;
      else if (event.key === "Enter") {
        event.preventDefault();
        event.target.click();
        return;
      }
      if (next) {
        event.preventDefault();
        next.focus();
      }
    });

    picker.addEventListener("change", showCount);
    clear.addEventListener("click", function () {
      picker.querySelectorAll(".label-option input:checked").forEach(function (box) {
        box.checked = false;
      });
      showCount();
      status.textContent = "Selection cleared";
      filter.focus();
    });
    showCount();
  }

  function start() {
    document.querySelectorAll("[data-label-picker]").forEach(enhance);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
