// The one login for every role: a duty or community officer goes on to the board (or to the page
// that sent them here), an enterprise user to the portal.
import { $, api, ApiError, applyI18n, homeOf, PORTAL_PAGE, setLang, t } from './common.js';

/** Only a path on this site may follow ``?next=`` (no open redirect to another origin). */
function nextPage(user) {
  const next = new URLSearchParams(location.search).get('next') || '';
  const local = next.startsWith('/') && !next.startsWith('//') && !next.startsWith('/\\');
  if (user.role === 'enterprise') return local && !next.startsWith('/index.html') && next !== '/' ? next : PORTAL_PAGE;
  return local && !next.startsWith('/login.html') ? next : homeOf(user);
}

function showError(text) {
  const p = $('#login-error');
  p.textContent = text; p.hidden = !text;
}

for (const b of document.querySelectorAll('.lang button')) b.addEventListener('click', () => setLang(b.dataset.lang));
applyI18n();

// Already signed in (a bookmark to the login page): straight on.
api('GET', '/api/auth/me', undefined, { redirect401: false })
  .then((user) => location.replace(nextPage(user)))
  .catch(() => { $('input[name=username]').focus(); });

$('#login-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const form = e.target, username = form.elements.username.value.trim(), password = form.elements.password.value;
  if (!username) { form.elements.username.focus(); return; }
  if (!password) { form.elements.password.focus(); return; }
  const button = $('button[type=submit]', form);
  button.disabled = true; showError('');
  try {
    const user = await api('POST', '/api/auth/login', { username, password }, { redirect401: false });
    location.assign(nextPage(user));
  } catch (err) {
    form.elements.password.value = '';
    showError(err instanceof ApiError && err.status === 401 ? t('err_login') : err.message);
    form.elements.password.focus();
  } finally {
    button.disabled = false;
  }
});
