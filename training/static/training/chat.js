// Chat with the deployed model: the reply is read from a stream of server-sent events and shown as
// it arrives. Text is always inserted as text (textContent), never as HTML.
(function () {
  "use strict";
  var root = document.getElementById("chat");
  if (!root) return;
  var turns = [];
  var list = document.getElementById("chat-turns");
  var form = document.getElementById("chat-form");
  var input = document.getElementById("chat-input");
  var status = document.getElementById("chat-status");
  var toPrompt = document.getElementById("chat-to-prompt");
  var deployment = document.getElementById("chat-deployment");
  var busy = false;

  function csrf() {
    var match = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function show(role, text) {
    var item = document.createElement("li");
    item.className = "turn turn-" + role;
    var who = document.createElement("span");
    who.className = "who";
    who.textContent = role === "user" ? "You" : "Model";
    var body = document.createElement("div");
    body.className = "turn-text plain";
    body.textContent = text;
    item.appendChild(who);
    item.appendChild(body);
    list.appendChild(item);
    return body;
  }

  function post(url, payload) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf() },
      body: JSON.stringify(payload),
    });
  }

  function send(event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text || busy) return;
    busy = true;
    turns.push({ role: "user", content: text });
    show("user", text);
    input.value = "";
    toPrompt.disabled = true;
    var body = show("assistant", "");
    status.textContent = "The model is writing…";
    post(root.dataset.reply, { turns: turns, deployment_id: Number(deployment.value) }).then(function (response) {
      if (!response.ok) {
        return response.json().then(function (error) { throw new Error(error.detail || response.statusText); },
                                    function () { throw new Error(response.statusText); });
      }
      // Server-sent events: {"text": ...} pieces, then `event: done`, or `event: error` with {"detail": ...}.
      var reader = response.body.getReader();
      var decoder = new TextDecoder();
      var buffer = "";
      var reply = "";
      var signature = "";
      var withheld = "";
      function handle(block) {
        var kind = "message";
        var data = "";
        block.split("\n").forEach(function (line) {
          if (line.indexOf("event: ") === 0) kind = line.slice(7);
          else if (line.indexOf("data: ") === 0) data += line.slice(6);
        });
        var payload = data ? JSON.parse(data) : {};
        if (kind === "error") throw new Error(payload.detail);
        if (kind === "done") signature = payload.signature;
        // The project's content screen stopped the reply: its notice replaces what was shown so far.
        if (kind === "withheld") {
          withheld = payload.notice;
          body.textContent = withheld;
          body.classList.add("muted");
        }
        if (kind === "message") {
          reply += payload.text;
          body.textContent = reply;
        }
      }
      function pump() {
        return reader.read().then(function (chunk) {
          if (chunk.done) return { content: reply, signature: signature, withheld: withheld };
          buffer += decoder.decode(chunk.value, { stream: true });
          var end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            handle(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
          }
          return pump();
        });
      }
      return pump();
    }).then(function (reply) {
      if (reply.withheld) {
        // A withheld reply has no signature and is no turn of the chat: the model never sees it again, and
        // your message goes with it (as when a reply fails).
        turns.pop();
        status.textContent = "Your message and its withheld reply are not part of the chat; write another.";
        return;
      }
      // The signature is the server's word that it wrote this reply: saving the chat as a prompt sends it back.
      turns.push({ role: "assistant", content: reply.content, signature: reply.signature });
      status.textContent = "";
    }).catch(function (error) {
      turns.pop();
      body.parentNode.remove();
      status.textContent = "No reply: " + error.message;
    }).then(function () {
      busy = false;
      toPrompt.disabled = !turns.length;
      input.focus();
    });
  }

  form.addEventListener("submit", send);
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey) send(event);
  });
  toPrompt.addEventListener("click", function () {
    // The queue's prompt is the chat up to a message of yours: drop a last model reply.
    var chat = turns.slice();
    if (chat.length && chat[chat.length - 1].role === "assistant") chat.pop();
    post(root.dataset.prompt, { turns: chat, deployment_id: Number(deployment.value) }).then(function (response) {
      if (response.ok) {
        status.textContent = "Saved: your last message is now a prompt in the queue.";
        return;
      }
      // The server's reason (a chat deeper than the project allows, say), whatever field it names.
      return response.json().then(function (error) {
        var reasons = [];
        Object.keys(error).forEach(function (field) { reasons = reasons.concat(error[field]); });
        status.textContent = "Could not save the chat as a prompt: " + reasons.join(" ");
      }, function () {
        status.textContent = "Could not save the chat as a prompt: " + response.statusText;
      });
    });
  });
  document.getElementById("chat-reset").addEventListener("click", function () {
    turns = [];
    list.textContent = "";
    toPrompt.disabled = true;
    status.textContent = "";
    input.focus();
  });
})();
