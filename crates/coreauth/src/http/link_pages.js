// Sends the page's form to coreauth's API with the token from the link's fragment.
(function () {
  var form = document.getElementById('link-form');
  var result = document.getElementById('link-result');
  var token = new URLSearchParams(location.hash.slice(1)).get('token');
  if (!token) {
    result.textContent = 'This link is incomplete: open it again from the message.';
    form.hidden = true;
    return;
  }
  // The token leaves the address bar: it is not kept in the history or shown over a shoulder.
  history.replaceState(null, '', location.pathname);
  form.addEventListener('submit', function (event) {
    event.preventDefault();
    var body = { token: token };
    new FormData(form).forEach(function (value, name) { body[name] = value; });
    fetch(form.dataset.action, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body)
    }).then(function (response) {
      if (response.ok) {
        form.hidden = true;
        result.textContent = 'Done. You can sign in now.';
        return;
      }
      return response.json().then(function (error) {
        result.textContent = error.message || 'That did not work.';
      });
    }, function () {
      result.textContent = 'coreauth could not be reached; try again.';
    });
  });
})();
