"use strict";
// The hub's pages (live, analytics) need a terminal token with the viewer role
// (storesense hub --add-terminal NAME). It comes once, in the address's fragment (#token=..., never sent to
// the server) or typed in, and is kept in this browser for every page of the hub.
function viewerToken(what) {
  const fromUrl = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromUrl) {
    localStorage.setItem("storesense-viewer-token", fromUrl);
    history.replaceState(null, "", location.pathname + location.search);
  }
  let token = localStorage.getItem("storesense-viewer-token");
  if (!token) {
    token = (window.prompt("Viewer token for " + what) || "").trim();
    if (token) localStorage.setItem("storesense-viewer-token", token);
  }
  return token || "";
}
