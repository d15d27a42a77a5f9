// consultd pages: login, student, teacher, call, my page, replay, admin.
// Plain DOM, no framework, no build step.  User text (names, intros) only ever
// goes into textContent, never innerHTML; the server's CSP forbids inline
// script as a second line of defence.
'use strict';

const view = document.getElementById('view');
let me = null;          // the logged-in user
let events = null;      // the EventSource
let call = null;        // the active call, if any
let myLine = 0;         // the teacher whose line this student waits in, if any
const handlers = new Set();

// ---------------------------------------------------------------- helpers
function h(tag, attrs = {}, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else if (v === true) el.setAttribute(k, '');
    else if (v !== false && v != null) el.setAttribute(k, v);
  }
  for (const kid of kids.flat()) if (kid != null) el.append(kid instanceof Node ? kid : String(kid));
  return el;
}

async function api(method, path, body) {
  const opts = { method, headers: {} };
  if (body !== undefined) { opts.headers['Content-Type'] = 'application/json'; opts.body = JSON.stringify(body); }
  const r = await fetch(path, opts);
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  return { status: r.status, ok: r.ok, data: data || {}, retryAfter: Number(r.headers.get('Retry-After')) || 0 };
}

function toast(text) {
  const el = h('div', { class: 'toast', text });
  document.getElementById('toasts').append(el);
  setTimeout(() => el.remove(), 8000);
}

function fmtTime(s) { return s ? new Date(s).toLocaleString(LANG) : '—'; }
function fmtDur(sec) { const s = Math.round(sec || 0); return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`; }
function statusBadge(st) { return h('span', { class: 'status ' + st, 'data-status': st, text: t('status_' + st) }); }
function on(type, fn) { handlers.add({ type, fn }); }

// ----------------------------------------------------------------- events
function connectEvents() {
  if (events) events.close();
  events = new EventSource('/api/events');
  const kinds = ['teacher.online', 'teacher.offline', 'teacher.busy', 'teacher.available',
    'teacher.favorited', 'teacher.unfavorited', 'teacher.profile_updated',
    'consultation.requested', 'consultation.accepted', 'consultation.declined',
    'consultation.canceled', 'consultation.expired', 'consultation.ended',
    'consultation.interrupted', 'consultation.resumed', 'participant.joined',
    'participant.left', 'recording.ready', 'recording.failed', 'message.created',
    'messages.deleted', 'line.joined', 'line.left', 'line.offered', 'line.opened', 'line.closed',
    'screen.started', 'screen.stopped'];
  // The log no longer holds what this page missed (event-retention-days):
  // draw it again from the API.
  events.addEventListener('reset', () => route());
  for (const k of kinds) {
    events.addEventListener(k, ev => {
      const e = JSON.parse(ev.data);
      for (const hd of handlers) if (hd.type === k || hd.type === '*') hd.fn(e);
    });
  }
}

// ---------------------------------------------------------------- routing
async function route() {
  handlers.clear();
  globalHandlers();
  if (call && !location.hash.startsWith('#/call/')) await endCall(false);
  const hash = location.hash || '#/';
  if (!me) {
    const r = await api('GET', '/api/me');
    if (r.ok) { me = r.data; connectEvents(); }
  }
  document.getElementById('logout').hidden = !me;
  document.getElementById('who').textContent = me ? `${me.display_name} (${me.username})` : '';
  view.replaceChildren();
  if (!me) return loginView();
  const m = hash.match(/^#\/(call|replay)\/(\d+)$/);
  if (m && m[1] === 'call') return callView(Number(m[2]));
  if (m && m[1] === 'replay') return replayView(Number(m[2]));
  if (hash === '#/mypage' && me.role === 'student') return myPageView();
  if (me.role === 'student') return studentView();
  if (me.role === 'teacher') return teacherView();
  return adminView();
}

function globalHandlers() {
  // A favored teacher coming online is news wherever the student is.
  on('teacher.online', async e => {
    if (!me || me.role !== 'student') return;
    const r = await api('GET', `/api/teachers/${e.data.teacher_id}`);
    if (r.ok && r.data.favorite) toast(t('fav_online', { name: r.data.display_name }));
  });
  on('consultation.accepted', e => {
    if (me && me.role === 'student' && e.data.student_id === me.id) location.hash = `#/call/${e.data.consultation_id}`;
  });
  for (const [k, msg] of [['consultation.declined', 'declined'], ['consultation.expired', 'expired']]) {
    on(k, e => { if (me && me.role === 'student') toast(t(msg)); });
  }
  on('consultation.requested', async e => {
    if (me && me.role === 'teacher' && e.data.teacher_id === me.id) toast(t('new_request', { name: '#' + e.data.student_id }));
    if (me && me.role === 'student' && e.data.student_id === me.id && e.data.reason === 'from_line') {
      myLine = 0;
      const r = await api('GET', `/api/teachers/${e.data.teacher_id}`);
      toast(t('your_turn', { name: r.ok ? r.data.display_name : '#' + e.data.teacher_id }));
    }
  });
  on('line.left', e => {
    if (me && me.role === 'student' && e.data.student_id === me.id && e.data.reason === 'teacher_offline') {
      myLine = 0;
      toast(t('line_teacher_left'));
    }
  });
}

// ------------------------------------------------------------------ login
function loginView() {
  const tpl = document.getElementById('t-login').content.cloneNode(true);
  view.append(tpl);
  applyI18n(view);
  const form = document.getElementById('login-form');
  form.addEventListener('submit', async ev => {
    ev.preventDefault();
    const fd = new FormData(form);
    const r = await api('POST', '/api/login', { username: fd.get('username'), password: fd.get('password') });
    const err = document.getElementById('login-error');
    if (r.status === 429) { err.textContent = t('rate_limited', { s: r.retryAfter }); return; }
    if (!r.ok) { err.textContent = t('login_failed'); return; }
    me = r.data.user;
    connectEvents();
    location.hash = '#/';
    route();
  });
  form.querySelector('input').focus();
}

// ---------------------------------------------------------------- student
async function studentView() {
  const list = h('div', { class: 'grid', id: 'teachers' });
  const notice = h('p', { class: 'error', id: 'request-msg', role: 'alert' });
  view.append(h('div', { class: 'row' }, h('h1', { text: t('teachers') }), h('span', { class: 'spacer' }),
    h('a', { href: '#/mypage', id: 'mypage-link', text: t('my_page') })), notice, list);
  let pending = null;
  async function render() {
    const r = await api('GET', '/api/teachers');
    if (!r.ok) return;
    await loadLines(r.data.teachers);
    list.replaceChildren(...r.data.teachers.map(tc => {
      const fav = h('button', { type: 'button', class: 'secondary fav', 'aria-pressed': String(tc.favorite),
        text: tc.favorite ? '★ ' + t('unfavorite') : '☆ ' + t('favorite'),
        onclick: async () => { await api(tc.favorite ? 'DELETE' : 'POST', `/api/teachers/${tc.id}/favorite`); render(); } });
      const req = h('button', { type: 'button', class: 'request', text: t('request'),
        onclick: () => request(tc) });
      const line = lines.get(tc.id);
      const waiting = line && line.position > 0;
      const lineRow = waiting
        ? h('div', { class: 'row line' }, h('span', { class: 'line-place', role: 'status', 'data-position': line.position,
            text: t('line_place', { pos: line.position, ahead: line.ahead }) }),
          h('button', { type: 'button', class: 'secondary line-leave', text: t('leave_line'), onclick: () => leaveLine(tc) }))
        : tc.status === 'busy' ? h('div', { class: 'row line' },
          h('button', { type: 'button', class: 'secondary line-join', text: t('join_line'), onclick: () => joinLine(tc) })) : null;
      return h('article', { class: 'card teacher', 'data-teacher': tc.id },
        h('h3', { text: tc.display_name }), statusBadge(tc.status),
        h('p', { class: 'intro', text: tc.intro }),
        h('p', { class: 'muted', text: `${t('popularity', { n: tc.popularity })} · ${t('consultations_done', { n: tc.consultation_count })}` }),
        h('div', { class: 'row' }, req, fav), lineRow);
    }));
  }
  // The student's place in each busy teacher's line (at most one holds it).
  const lines = new Map();
  async function loadLines(teachers) {
    lines.clear();
    myLine = 0;
    await Promise.all(teachers.filter(tc => tc.status === 'busy').map(async tc => {
      const r = await api('GET', `/api/teachers/${tc.id}/line`);
      if (r.ok) { lines.set(tc.id, r.data); if (r.data.position > 0) myLine = tc.id; }
    }));
  }
  async function joinLine(tc) {
    notice.textContent = '';
    const r = await api('POST', `/api/teachers/${tc.id}/line`);
    if (!r.ok) notice.textContent = r.data.error === 'line_full' ? t('line_full')
      : r.data.error === 'line_closed' ? t('line_is_closed')
        : r.data.error === 'teacher_free' || r.data.error === 'teacher_offline' ? t('error', { m: r.data.message })
          : t('error', { m: r.data.message || r.status });
    render();
  }
  async function leaveLine(tc) {
    await api('DELETE', `/api/teachers/${tc.id}/line`);
    render();
  }
  async function request(tc) {
    notice.textContent = '';
    const r = await api('POST', '/api/consultations', { teacher_id: tc.id });
    if (r.status === 201) {
      pending = r.data.id;
      notice.replaceChildren(t('request_sent'), ' ',
        h('button', { type: 'button', class: 'secondary', text: t('cancel'),
          onclick: async () => { await api('POST', `/api/consultations/${pending}/cancel`); notice.textContent = t('canceled'); render(); } }));
    } else if (r.data.error === 'teacher_offline') notice.textContent = t('teacher_offline');
    else if (r.data.error === 'teacher_busy') notice.textContent = t('teacher_busy');
    else if (r.status === 503 || r.status === 429) notice.textContent = t('over_capacity', { s: r.retryAfter || 10 });
    else notice.textContent = t('error', { m: r.data.message || r.status });
    render();
  }
  for (const k of ['teacher.online', 'teacher.offline', 'teacher.busy', 'teacher.available', 'teacher.favorited', 'teacher.unfavorited',
    'line.joined', 'line.left', 'line.offered', 'line.opened', 'line.closed']) on(k, render);
  await render();
  // Teachers the student does not favor change status too: refresh now and then.
  const timer = setInterval(() => { if (document.getElementById('teachers') === list) render(); else clearInterval(timer); }, 10000);
}

async function myPageView() {
  const body = h('tbody');
  view.append(h('h1', { text: t('my_page') }),
    h('table', {}, h('thead', {}, h('tr', {}, ...['teacher', 'status', 'when', 'duration', 'recordings'].map(k => h('th', { text: t(k) })))), body));
  async function render() {
    const r = await api('GET', '/api/mypage');
    if (!r.ok) return;
    body.replaceChildren(...r.data.consultations.map(c => h('tr', { 'data-consultation': c.consultation_id },
      h('td', { text: c.teacher.display_name }), h('td', { text: c.status }), h('td', { text: fmtTime(c.requested_at) }),
      h('td', { text: fmtDur(c.duration_seconds) }),
      h('td', {}, c.recordings.length || c.messages ? h('a', { href: `#/replay/${c.consultation_id}`, class: 'replay-link', text: t('replay') })
        : (c.status === 'ended' ? t('processing') : '—')))));
  }
  on('*', render);
  await render();
}

// ---------------------------------------------------------------- teacher
async function teacherView() {
  const state = h('p', { id: 'presence-state' });
  const toggle = h('button', { type: 'button', id: 'presence-toggle' });
  const intro = h('textarea', { id: 'intro', maxlength: '2000', 'aria-label': t('intro') });
  const saved = h('span', { class: 'muted', role: 'status' });
  const incoming = h('div', { id: 'incoming' });
  const lineCount = h('span', { id: 'line-length', role: 'status' });
  const lineToggle = h('button', { type: 'button', class: 'secondary', id: 'line-toggle' });
  const lineList = h('ol', { id: 'line-students' });
  const hist = h('tbody');
  view.append(h('h1', { text: me.display_name }), h('div', { class: 'card' }, state, toggle),
    h('div', { class: 'card' }, h('label', {}, h('span', { text: t('intro') }), intro),
      h('div', { class: 'row' }, h('button', { type: 'button', id: 'save-intro', text: t('save'), onclick: async () => {
        const r = await api('PUT', `/api/teachers/${me.id}/profile`, { intro: intro.value });
        saved.textContent = r.ok ? t('saved') : t('error', { m: r.data.message });
      } }), saved)),
    h('h2', { text: t('incoming') }), incoming,
    h('h2', { text: t('line_title') }), h('div', { class: 'card' }, h('div', { class: 'row' }, lineCount, lineToggle), lineList),
    h('h2', { text: t('history') }),
    h('table', {}, h('thead', {}, h('tr', {}, ...['student', 'status', 'when', 'recordings'].map(k => h('th', { text: t(k) })))), hist));
  let status = 'offline';
  async function renderMe() {
    const r = await api('GET', `/api/teachers/${me.id}`);
    if (!r.ok) return;
    status = r.data.status;
    state.replaceChildren(t('you_are', { status: t('status_' + status) }), ' ', statusBadge(status),
      h('span', { class: 'muted', id: 'my-count', 'data-count': r.data.consultation_count, text: ' · ' + t('consultations_done', { n: r.data.consultation_count }) }));
    toggle.textContent = status === 'offline' ? t('go_online') : t('go_offline');
    toggle.disabled = status === 'busy';
    if (document.activeElement !== intro) intro.value = r.data.intro;
  }
  toggle.onclick = async () => {
    await api('PUT', `/api/teachers/${me.id}/presence`, { status: status === 'offline' ? 'online' : 'offline' });
    renderMe();
  };
  async function renderLists() {
    const r = await api('GET', '/api/consultations');
    if (!r.ok) return;
    const req = r.data.consultations.filter(c => c.status === 'requested');
    incoming.replaceChildren(...(req.length ? req.map(c => h('div', { class: 'card row', 'data-consultation': c.id },
      h('strong', { text: c.student.display_name }), h('span', { class: 'muted', text: fmtTime(c.requested_at) }),
      c.from_line ? h('span', { class: 'badge from-line', text: t('from_line') }) : null,
      h('span', { class: 'spacer' }),
      h('button', { type: 'button', class: 'accept', text: t('accept'), onclick: async () => {
        const a = await api('POST', `/api/consultations/${c.id}/accept`);
        if (a.ok) location.hash = `#/call/${c.id}`; else toast(t('error', { m: a.data.message }));
      } }),
      h('button', { type: 'button', class: 'secondary', text: t('decline'), onclick: async () => {
        await api('POST', `/api/consultations/${c.id}/decline`); renderLists(); renderMe();
      } }))) : [h('p', { class: 'muted', text: t('none') })]));
    hist.replaceChildren(...r.data.consultations.filter(c => c.status !== 'requested').map(c => h('tr', {},
      h('td', { text: c.student.display_name }), h('td', { text: c.status }), h('td', { text: fmtTime(c.requested_at) }),
      h('td', {}, c.status === 'live' ? h('a', { href: `#/call/${c.id}`, text: t('connected') })
        : h('a', { href: `#/replay/${c.id}`, text: t('replay') })))));
  }
  let lineOpen = true;
  async function renderLine() {
    const r = await api('GET', `/api/teachers/${me.id}/line`);
    if (!r.ok) return;
    lineOpen = r.data.open;
    lineCount.dataset.length = r.data.length;
    lineCount.textContent = `${t('line_count', { n: r.data.length })}${r.data.open ? '' : ' · ' + t('line_is_closed')}`;
    lineToggle.textContent = r.data.open ? t('close_line') : t('open_line');
    lineList.replaceChildren(...r.data.students.map(x => h('li', { 'data-student': x.id, text: x.display_name })));
  }
  lineToggle.onclick = async () => { await api('PUT', `/api/teachers/${me.id}/line`, { open: !lineOpen }); renderLine(); };
  on('*', () => { renderMe(); renderLists(); renderLine(); });
  renderLine();
  await renderMe();
  // Opening the console is going online (explicitly, through the API).
  if (status === 'offline' && !sessionStorage.getItem('stayed-offline')) {
    await api('PUT', `/api/teachers/${me.id}/presence`, { status: 'online' });
    await renderMe();
  }
  toggle.addEventListener('click', () => sessionStorage.setItem('stayed-offline', status === 'online' ? '1' : ''));
  await renderLists();
}

// ------------------------------------------------------------------- call
async function callView(id) {
  const c = await api('GET', `/api/consultations/${id}`);
  if (!c.ok) { view.append(h('p', { class: 'error', text: t('not_allowed') })); return; }
  const remote = h('video', { class: 'remote', id: 'remote-video', autoplay: true, playsinline: true });
  const screen = h('video', { class: 'screen', id: 'remote-screen', autoplay: true, playsinline: true, muted: true });
  const local = h('video', { class: 'local', id: 'local-video', autoplay: true, playsinline: true, muted: true });
  const state = h('span', { class: 'state', id: 'call-state', role: 'status', 'aria-live': 'polite', text: t('connecting') });
  const other = me.role === 'teacher' ? c.data.student.display_name : c.data.teacher.display_name;
  const mute = h('button', { type: 'button', class: 'secondary', id: 'mute', 'aria-pressed': 'false', text: t('mute') });
  const cam = h('button', { type: 'button', class: 'secondary', id: 'camera', 'aria-pressed': 'false', text: t('camera_off') });
  const end = me.role === 'teacher'
    ? h('button', { type: 'button', class: 'danger', id: 'end-call', text: t('end'), onclick: async () => {
        await api('POST', `/api/consultations/${id}/end`); await endCall(true);
      } })
    : h('button', { type: 'button', class: 'danger', id: 'leave-call', text: t('leave'), onclick: () => endCall(true) });
  const share = h('button', { type: 'button', class: 'secondary', id: 'share-screen', 'aria-pressed': 'false', text: t('share_screen') });
  const box = h('div', { class: 'call' }, screen, remote, local, state);
  screen.setAttribute('aria-label', t('screen_of', { who: other }));
  view.append(h('h1', { text: other }), box, h('div', { class: 'row' }, mute, cam, share, end));
  view.append(await chatPanel(id));
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: true });
  } catch (e) {
    state.textContent = t('error', { m: e.message });
    return;
  }
  local.srcObject = stream;
  mute.onclick = () => { const a = stream.getAudioTracks()[0]; if (a) { a.enabled = !a.enabled; mute.setAttribute('aria-pressed', String(!a.enabled)); mute.textContent = a.enabled ? t('mute') : t('unmute'); } };
  cam.onclick = () => { const v = stream.getVideoTracks()[0]; if (v) { v.enabled = !v.enabled; cam.setAttribute('aria-pressed', String(!v.enabled)); cam.textContent = v.enabled ? t('camera_off') : t('camera_on'); } };
  const setState = (s, msg) => { state.dataset.state = s; state.textContent = s === 'failed' ? t('error', { m: msg }) : t(s); };
  // STUN/TURN from the server (TURN credentials are minted per user).
  const ice = await api('GET', '/api/ice-servers');
  const iceServers = ice.ok ? ice.data.ice_servers : [];
  const pub = new MediaLink(`/whip/consultations/${id}`, { stream, iceServers, onstate: setState });
  const sub = new MediaLink(`/whep/consultations/${id}`, { iceServers, onstate: () => {}, ontrack: ms => { remote.srcObject = ms; } });
  call = { id, pub, sub, stream, screenPub: null, screenSub: null };
  window.consultdCall = call; // for tests and debugging
  pub.start();
  sub.start();
  // Screen sharing: this participant's screen is a second WHIP session,
  // the other's a second WHEP session, taken while they share.
  const c0 = call;
  async function stopSharing() {
    const p = c0.screenPub;
    c0.screenPub = null;
    share.textContent = t('share_screen');
    share.setAttribute('aria-pressed', 'false');
    if (!p) return;
    for (const tr of p.stream.getTracks()) tr.stop();
    await p.close();
  }
  share.onclick = async () => {
    if (c0.screenPub) { await stopSharing(); return; }
    let shot;
    try {
      shot = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { max: 15 } }, audio: false });
    } catch (e) {
      if (e.name !== 'NotAllowedError') toast(t('screen_failed', { m: e.message }));
      return;
    }
    if (call !== c0) { for (const tr of shot.getTracks()) tr.stop(); return; }
    const v = shot.getVideoTracks()[0];
    if (v) {
      v.contentHint = 'detail'; // text: sharpness before frame rate
      v.addEventListener('ended', () => { if (c0.screenPub && c0.screenPub.stream === shot) stopSharing(); });
    }
    c0.screenPub = new MediaLink(`/whip/consultations/${id}?stream=screen`,
      { stream: shot, iceServers, degradation: 'maintain-resolution' });
    share.textContent = t('stop_sharing');
    share.setAttribute('aria-pressed', 'true');
    c0.screenPub.start();
  };
  function watchScreen(on) {
    if (on && !c0.screenSub) {
      c0.screenSub = new MediaLink(`/whep/consultations/${id}?stream=screen`,
        { iceServers, ontrack: ms => { screen.srcObject = ms; } });
      c0.screenSub.start();
    } else if (!on && c0.screenSub) {
      const s = c0.screenSub;
      c0.screenSub = null;
      s.close();
      screen.srcObject = null;
      box.classList.remove('sharing');
    }
  }
  // Large only once its picture is there.
  screen.addEventListener('resize', () => { if (c0.screenSub && screen.videoWidth) box.classList.add('sharing'); });
  const otherRole = me.role === 'teacher' ? 'student' : 'teacher';
  if ((c.data.screens || []).includes(otherRole)) watchScreen(true);
  on('screen.started', e => { if (call === c0 && e.data.consultation_id === id && e.data.role === otherRole) watchScreen(true); });
  on('screen.stopped', e => { if (call === c0 && e.data.consultation_id === id && e.data.role === otherRole) watchScreen(false); });
  on('consultation.ended', e => { if (e.data.consultation_id === id) { toast(t('ended')); endCall(true); } });
  on('consultation.interrupted', e => {
    if (e.data.consultation_id !== id) return;
    setState('reconnecting'); pub._retry(); sub._retry();
    if (c0.screenPub) c0.screenPub._retry();
    if (c0.screenSub) c0.screenSub._retry();
  });
}

async function endCall(navigate) {
  const c = call;
  call = null;
  if (!c) return;
  const links = [c.pub, c.sub, c.screenPub, c.screenSub].filter(Boolean);
  await Promise.all(links.map(l => l.close()));
  for (const tr of c.stream.getTracks()) tr.stop();
  if (c.screenPub) for (const tr of c.screenPub.stream.getTracks()) tr.stop();
  if (navigate) location.hash = me.role === 'student' ? '#/mypage' : '#/';
}

// ------------------------------------------------------------------- chat
// Message text goes into text nodes only; http(s) links become <a> with
// rel="noopener noreferrer" (never innerHTML).
function linkified(text) {
  const out = [];
  let last = 0;
  for (const m of text.matchAll(/https?:\/\/[^\s<>"']+/g)) {
    if (m.index > last) out.push(document.createTextNode(text.slice(last, m.index)));
    out.push(h('a', { href: m[0], rel: 'noopener noreferrer', target: '_blank', text: m[0] }));
    last = m.index + m[0].length;
  }
  if (last < text.length) out.push(document.createTextNode(text.slice(last)));
  return out;
}

// The conversation of consultation ID: live (a form to write, new messages
// from the events stream) or, with SEEK, the record (each message a
// button to its moment in the recording).
async function chatPanel(id, seek) {
  const list = h('ol', { class: 'chat-list', id: 'chat-list', 'aria-live': 'polite' });
  const seen = new Set();
  const empty = h('p', { class: 'muted', id: 'chat-empty', text: t('no_messages') });
  function add(m) {
    if (seen.has(m.id)) return;
    seen.add(m.id);
    empty.remove();
    const at = new Date(m.created_at); // ISO from the API, ms from an event
    const who = m.author.id === me.id ? t('you') : t(m.author.role);
    const head = h('span', { class: 'chat-meta' }, h('strong', { text: who }), ' ',
      h('time', { datetime: at.toISOString(), text: seek ? fmtDur(m.offset_seconds) : at.toLocaleTimeString(LANG) }));
    const body = h('span', { class: 'chat-body' }, ...linkified(m.body));
    const item = h('li', { 'data-message-id': m.id, 'data-offset': m.offset_seconds, class: 'chat-item ' + m.author.role },
      seek ? h('button', { type: 'button', class: 'chat-seek', onclick: () => seek(m.offset_seconds) }, head) : head, ' ', body);
    list.append(item);
    list.scrollTop = list.scrollHeight;
  }
  const r = await api('GET', `/api/consultations/${id}/messages`);
  const panel = h('section', { class: 'chat card', 'aria-label': t('chat') }, h('h2', { text: t('chat') }), empty, list);
  if (r.ok) r.data.messages.forEach(add);
  if (!seek) {
    const input = h('textarea', { id: 'chat-input', maxlength: '2000', rows: '2', 'aria-label': t('message') });
    const send = h('button', { type: 'submit', id: 'chat-send', text: t('send') });
    const form = h('form', { class: 'row chat-form' }, input, send);
    form.addEventListener('submit', async ev => {
      ev.preventDefault();
      const text = input.value;
      if (!text.trim()) return;
      send.disabled = true;
      const a = await api('POST', `/api/consultations/${id}/messages`, { body: text });
      send.disabled = false;
      if (a.ok) { input.value = ''; add(a.data); } else toast(t('message_failed', { m: a.data.message }));
    });
    input.addEventListener('keydown', ev => { if (ev.key === 'Enter' && !ev.shiftKey) { ev.preventDefault(); form.requestSubmit(); } });
    panel.append(form);
    on('message.created', e => {
      if (e.data.consultation_id !== id) return;
      const m = e.data.message;
      add({ id: m.id, author: { id: m.author_id, role: m.role }, body: m.body, created_at: m.created_at, offset_seconds: m.offset_ms / 1000 });
    });
  }
  return panel;
}

// ----------------------------------------------------------------- replay
async function replayView(id) {
  const r = await api('GET', `/api/consultations/${id}/recordings`);
  if (!r.ok) { view.append(h('h1', { text: t('replay') }), h('p', { class: 'error', id: 'replay-error', text: t('not_allowed') })); return; }
  // Shared screens first: they span the row, large, on the same timeline.
  const ready = r.data.recordings.filter(x => x.state === 'ready' && x.role !== 'combined')
    .sort((a, b) => (b.stream === 'screen') - (a.stream === 'screen'));
  const label = x => x.stream === 'screen' ? t('screen_of', { who: t(x.role) }) : t(x.role);
  const combined = r.data.recordings.find(x => x.role === 'combined');
  const vids = ready.map(x => Object.assign(h('video', { preload: 'auto', playsinline: true, 'data-role': x.role, 'data-stream': x.stream || 'camera', 'aria-label': label(x) }),
    { src: x.url, _offset: x.offset_seconds, _duration: x.duration_seconds }));
  const total = Math.max(0, ...ready.map(x => x.offset_seconds + x.duration_seconds));
  const play = h('button', { type: 'button', id: 'replay-play', text: t('play') });
  const bar = h('input', { type: 'range', id: 'timeline', min: '0', max: String(total), step: '0.1', value: '0', 'aria-label': t('timeline') });
  const clock = h('span', { id: 'replay-clock', text: '0:00' });
  view.append(h('h1', { text: t('replay_title', { id }) }),
    h('div', { class: 'replay' }, ...vids.map((v, i) => h('figure', { class: ready[i].stream === 'screen' ? 'screen' : '' }, v, h('figcaption', { text: label(ready[i]) })))),
    h('div', { class: 'row' }, play, bar, clock),
    combined ? h('p', { id: 'combined' }, combined.url
      ? h('a', { href: combined.url, download: `consultation-${id}.webm`, text: t('download') })
      : t('combining', { p: combined.progress || 0 })) : null);
  // One timeline: each video shows timeline time minus its start offset.
  // While a video plays, it is the clock (a slow decoder then slows the
  // timeline instead of being seeked forever); between videos, the wall clock.
  let playing = false, t0 = 0, base = 0;
  const now = () => playing ? base + (performance.now() - t0) / 1000 : base;
  // EXACT (a seek by the user): every video goes to TIME.  Otherwise only
  // one that drifted more than 0.5 s is moved; a smaller seek left alone
  // would be undone by the next tick, which reads the clock back from the
  // playing video.
  function place(time, master, exact) {
    for (const v of vids) {
      const local = time - v._offset;
      if (local < 0 || local > v._duration) { v.pause(); if (local < 0) v.currentTime = 0; continue; }
      if (v !== master && Math.abs(v.currentTime - local) > (exact ? 0.05 : 0.5)) v.currentTime = local;
      if (playing && v.paused) v.play().catch(() => {});
      if (!playing && !v.paused) v.pause();
    }
  }
  function tick() {
    const master = playing && vids.find(v => !v.paused && !v.seeking && v.readyState >= 2 && v.currentTime > 0);
    if (master) { base = master.currentTime + master._offset; t0 = performance.now(); }
    const time = Math.min(now(), total);
    bar.value = String(time);
    clock.textContent = fmtDur(time);
    place(time, master);
    if (time >= total) { playing = false; base = total; play.textContent = t('play'); }
    if (playing) requestAnimationFrame(tick);
  }
  play.onclick = () => {
    if (playing) { base = now(); playing = false; play.textContent = t('play'); place(base); return; }
    if (base >= total) base = 0;
    playing = true; t0 = performance.now(); play.textContent = t('pause'); tick();
  };
  bar.oninput = () => { base = Number(bar.value); t0 = performance.now(); place(base, null, true); clock.textContent = fmtDur(base); };
  const seek = s => { bar.value = String(s); bar.oninput(); };
  window.consultdReplay = { vids, total, seek, play: () => { if (!playing) play.onclick(); } };
  view.append(await chatPanel(id, seek));
}

// ------------------------------------------------------------------ admin
async function adminView() {
  const users = h('tbody'), live = h('tbody'), hooks = h('tbody'), workers = h('tbody'), recs = h('tbody');
  const disk = h('p', { id: 'disk-use', class: 'muted' });
  const form = h('form', { class: 'row', id: 'new-user' },
    h('input', { name: 'username', placeholder: t('username'), 'aria-label': t('username'), required: true }),
    h('input', { name: 'password', type: 'password', placeholder: t('password'), 'aria-label': t('password'), required: true }),
    h('input', { name: 'display_name', placeholder: t('display_name'), 'aria-label': t('display_name') }),
    h('select', { name: 'role', 'aria-label': t('role') }, ...['student', 'teacher', 'admin'].map(r => h('option', { value: r, text: r }))),
    h('button', { type: 'submit', text: t('create') }));
  const msg = h('p', { class: 'error', role: 'alert' });
  const table = (cols, body) => h('table', {}, h('thead', {}, h('tr', {}, ...cols.map(c => h('th', { text: c })))), body);
  view.append(h('h1', { text: t('users') }), form, msg, table(['id', t('username'), t('role'), t('display_name'), ''], users),
    h('h2', { text: t('live') }), table(['id', t('teacher'), t('student'), t('when'), 'node'], live),
    h('h2', { text: t('media_workers') }), table(['#', 'pid', 'ready', 'consultations'], workers),
    h('h2', { text: t('recordings') }), disk, table(['#', 'file', t('status'), 'MB', t('duration')], recs),
    h('h2', { text: t('webhooks') }), table(['event', 'url', 'state', 'attempts', 'error'], hooks));
  form.addEventListener('submit', async ev => {
    ev.preventDefault();
    const fd = new FormData(form);
    const r = await api('POST', '/api/users', Object.fromEntries(fd.entries()));
    msg.textContent = r.ok ? '' : t('error', { m: r.data.message });
    if (r.ok) form.reset();
    render();
  });
  async function render() {
    const [u, l, w, d, rc] = await Promise.all([api('GET', '/api/users'), api('GET', '/api/consultations?status=live'),
      api('GET', '/api/admin/media-workers'), api('GET', '/api/admin/webhook-deliveries'),
      api('GET', '/api/admin/recordings')]);
    const mb = b => (b / 1048576).toFixed(1);
    disk.textContent = rc.ok ? t('disk_use', { used: mb(rc.data.bytes), free: rc.data.disk ? mb(rc.data.disk.free_bytes) : '?' }) : '';
    recs.replaceChildren(...(rc.data.recordings || []).slice(0, 100).map(x => h('tr', {},
      h('td', { text: x.consultation_id }), h('td', {}, x.url ? h('a', { href: `#/replay/${x.consultation_id}`, text: x.file }) : x.file),
      h('td', { text: x.reason ? `${x.state} (${x.reason})` : x.state }), h('td', { text: mb(x.size) }), h('td', { text: fmtDur(x.duration_seconds) }))));
    users.replaceChildren(...(u.data.users || []).map(x => h('tr', {}, h('td', { text: x.id }), h('td', { text: x.username }),
      h('td', { text: x.role }), h('td', { text: x.display_name }),
      h('td', {}, x.id === me.id ? '' : h('button', { type: 'button', class: 'danger', text: t('delete'),
        onclick: async () => { await api('DELETE', `/api/users/${x.id}`); render(); } })))));
    live.replaceChildren(...(l.data.consultations || []).map(c => h('tr', {}, h('td', { text: c.id }),
      h('td', { text: c.teacher.display_name }), h('td', { text: c.student.display_name }), h('td', { text: fmtTime(c.started_at) }),
      h('td', { text: c.node_id || '' }))));
    workers.replaceChildren(...(w.data.workers || []).map(x => h('tr', {}, h('td', { text: x.index }), h('td', { text: x.pid }),
      h('td', { text: String(x.ready) }), h('td', { text: x.consultations }))));
    hooks.replaceChildren(...(d.data.deliveries || []).slice(0, 50).map(x => h('tr', {}, h('td', { text: x.event_id }),
      h('td', { text: x.url }), h('td', { text: x.state }), h('td', { text: x.attempts }), h('td', { text: x.last_error }))));
  }
  on('*', render);
  await render();
}

// ------------------------------------------------------------------ start
document.getElementById('lang').value = LANG;
document.getElementById('lang').addEventListener('change', e => { setLang(e.target.value); applyI18n(); route(); });
document.getElementById('logout').addEventListener('click', async () => {
  await endCall(false);
  await api('POST', '/api/logout');
  me = null;
  if (events) events.close();
  location.hash = '#/';
  route();
});
window.addEventListener('hashchange', route);
// Leaving the page leaves the line (losing the events stream does too, after
// the presence grace).
window.addEventListener('pagehide', () => {
  if (myLine) fetch(`/api/teachers/${myLine}/line`, { method: 'DELETE', keepalive: true });
});
applyI18n();
route();
