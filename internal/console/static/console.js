// keyhold console: progressive enhancement only. Every page works without
// this file; it adds auto-refresh while something changes state, a JSON
// check of policy editors, and reading an XKS proxy configuration file into
// the form before it is sent.
(function () {
  "use strict";
  var body = document.body;
  var refresh = parseInt(body.getAttribute("data-refresh") || "0", 10);
  if (refresh > 0) {
    setTimeout(function () {
      // Do not throw away what someone is typing.
      var a = document.activeElement;
      if (a && (a.tagName === "INPUT" || a.tagName === "TEXTAREA") && a.value) { return; }
      window.location.reload();
    }, refresh * 1000);
  }
  Array.prototype.forEach.call(document.querySelectorAll("textarea[data-json]"), function (ta) {
    var out = document.getElementById("policy-check");
    var check = function () {
      if (!out) { return; }
      try { JSON.parse(ta.value); out.textContent = "The policy is valid JSON."; out.className = "hint ok"; }
      catch (e) { out.textContent = "The policy is not valid JSON: " + e.message; out.className = "hint bad"; }
    };
    ta.addEventListener("input", check);
    check();
  });
  var file = document.getElementById("proxy_config");
  if (file && window.FileReader) {
    file.addEventListener("change", function () {
      if (!file.files.length) { return; }
      var r = new FileReader();
      r.onload = function () {
        var c;
        try { c = JSON.parse(r.result); } catch (e) { return; }
        var set = function (id, v) { var el = document.getElementById(id); if (el && v) { el.value = v; } };
        set("endpoint", c.XksProxyUriEndpoint);
        set("path", c.XksProxyUriPath);
        set("connectivity", c.XksProxyConnectivity);
        set("vpce_service", c.XksProxyVpcEndpointServiceName);
        set("vpce_owner", c.XksProxyVpcEndpointServiceOwner);
        var cred = c.XksProxyAuthenticationCredential || {};
        set("access_key_id", cred.AccessKeyId);
        set("secret", cred.RawSecretAccessKey);
      };
      r.readAsText(file.files[0]);
    });
  }
})();
