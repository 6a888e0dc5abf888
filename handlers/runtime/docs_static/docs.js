"use strict";
// Swagger UI over this server's copy of a contract (it lists this server first in
// `servers`, so "Try it out" calls the server that served the page). A file of its own,
// not an inline script: the docs pages' Content-Security-Policy allows no inline code.
(function () {
  var root = document.getElementById("swagger-ui");
  if (!root || typeof window.SwaggerUIBundle !== "function") {
    return;
  }
  window.ui = window.SwaggerUIBundle({
    url: root.getAttribute("data-spec-url"),
    domNode: root,
    deepLinking: true,
    validatorUrl: null // no badge fetched from a third-party validator
  });
})();
