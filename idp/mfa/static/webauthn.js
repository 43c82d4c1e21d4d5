// Passkey ceremonies for forms marked data-webauthn="create" or "get": fetch options (POST, CSRF
// header), run navigator.credentials, put the JSON answer into the form and submit it. A "get" form
// marked data-conditional also offers passkeys in the email field's autofill where supported.
(function () {
  "use strict";

  function say(form, text) {
    var box = form.querySelector("[data-webauthn-message]");
    if (box) { box.textContent = text; box.hidden = false; }
  }

  async function options(form) {
    var token = form.querySelector('input[name="csrf_token"]').value;
    var response = await fetch(form.dataset.optionsUrl, {method: "POST", headers: {"X-CSRFToken": token}, credentials: "same-origin"});
    if (!response.ok) { throw new Error("The server could not start the passkey request (" + response.status + ")."); }
    return response.json();
  }

  async function run(form, extra) {
    var json = await options(form);
    var credential;
    if (form.dataset.webauthn === "create") {
      credential = await navigator.credentials.create({publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(json)});
    } else {
      credential = await navigator.credentials.get(Object.assign({publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(json)}, extra));
    }
    if (!credential) { return; }
    form.querySelector('input[name="credential"]').value = JSON.stringify(credential.toJSON());
    form.submit();
  }

  function setUp(form) {
    var button = form.querySelector("[data-start]");
    if (!window.PublicKeyCredential || !PublicKeyCredential.parseRequestOptionsFromJSON) {
      say(form, "This browser does not support passkeys.");
      button.disabled = true;
      return;
    }
    var conditional = null;
    button.addEventListener("click", function () {
      if (conditional) { conditional.abort(); conditional = null; }
      run(form, {}).catch(function (error) { say(form, error.message || String(error)); });
    });
    if (form.dataset.conditional && PublicKeyCredential.isConditionalMediationAvailable) {
      PublicKeyCredential.isConditionalMediationAvailable().then(function (available) {
        if (!available) { return; }
        conditional = new AbortController();
        run(form, {mediation: "conditional", signal: conditional.signal}).catch(function () { /* aborted or dismissed */ });
      });
    }
  }

  document.querySelectorAll("form[data-webauthn]").forEach(setUp);
}());
