// Labels in English and Korean.  t(key, vars) looks up the current language
// and fills {name} placeholders; elements with data-i18n get their text set.
'use strict';
const I18N = {
  en: {
    app_name: 'Consultations', language: 'Language', logout: 'Log out', login: 'Log in',
    login_title: 'Log in', username: 'Username', password: 'Password',
    login_failed: 'Wrong username or password.', rate_limited: 'Too many attempts. Try again in {s} s.',
    teachers: 'Teachers', my_page: 'My page', favorite: 'Favorite', unfavorite: 'Remove favorite',
    request: 'Ask for a consultation', popularity: 'Favorites: {n}', consultations_done: 'Consultations: {n}',
    status_online: 'online', status_offline: 'offline', status_busy: 'busy',
    teacher_offline: 'This teacher is offline right now.', teacher_busy: 'This teacher is busy right now. Try again later.',
    over_capacity: 'The service is at capacity. Please retry in {s} s.', request_sent: 'Request sent. Waiting for the teacher…',
    cancel: 'Cancel', accept: 'Accept', decline: 'Decline', end: 'End consultation', leave: 'Leave',
    mute: 'Mute', unmute: 'Unmute', camera_off: 'Camera off', camera_on: 'Camera on',
    go_online: 'Go online', go_offline: 'Go offline', you_are: 'You are {status}.',
    intro: 'Introduction', save: 'Save', saved: 'Saved.', incoming: 'Incoming requests', none: 'Nothing yet.',
    history: 'History', teacher: 'Teacher', student: 'Student', status: 'Status', when: 'When', duration: 'Duration',
    recordings: 'Recordings', replay: 'Replay', processing: 'processing…',
    fav_online: '{name} is online now.', declined: 'The teacher declined.', expired: 'The request expired.',
    canceled: 'The request was canceled.', ended: 'The consultation has ended.', interrupted: 'Connection to the media server was lost; reconnecting…',
    connecting: 'Connecting…', connected: 'Connected', reconnecting: 'Connection lost. Reconnecting…',
    waiting_other: 'Waiting for the other participant…', new_request: 'New request from {name}.',
    users: 'Users', create: 'Create', role: 'Role', display_name: 'Display name', delete: 'Delete',
    live: 'Live consultations', webhooks: 'Webhook deliveries', media_workers: 'Media workers',
    not_allowed: 'You may not see this.', play: 'Play', pause: 'Pause', timeline: 'Timeline',
    replay_title: 'Replay of consultation {id}', back: 'Back', error: 'Something went wrong: {m}',
    disk_use: 'Recordings use {used} MB; {free} MB free on the disk.',
    download: 'Download both side by side (one file)', combining: 'Preparing one combined file… {p}%',
    chat: 'Chat', send: 'Send', message: 'Message', you: 'You', no_messages: 'No messages yet.',
    message_failed: 'The message was not sent: {m}',
    share_screen: 'Share screen', stop_sharing: 'Stop sharing', screen: 'Screen',
    screen_failed: 'The screen cannot be shared: {m}', screen_of: "{who}'s screen",
    join_line: 'Wait in line', leave_line: 'Leave the line', line_place: 'You are number {pos} in line ({ahead} ahead).',
    line_title: 'Waiting line', line_count: '{n} waiting', close_line: 'Close the line', open_line: 'Open the line',
    line_is_closed: 'The line is closed.', line_full: 'The line is full.', from_line: 'from your line',
    your_turn: 'Your turn: your request went to {name}.', line_teacher_left: 'The teacher went offline; the line was closed.',
  },
  ko: {
    app_name: '상담', language: '언어', logout: '로그아웃', login: '로그인',
    login_title: '로그인', username: '아이디', password: '비밀번호',
    login_failed: '아이디 또는 비밀번호가 틀렸습니다.', rate_limited: '시도가 너무 많습니다. {s}초 후 다시 시도하세요.',
    teachers: '선생님', my_page: '마이페이지', favorite: '즐겨찾기', unfavorite: '즐겨찾기 해제',
    request: '상담 요청', popularity: '즐겨찾기: {n}', consultations_done: '상담 횟수: {n}',
    status_online: '온라인', status_offline: '오프라인', status_busy: '상담 중',
    teacher_offline: '선생님이 지금 오프라인입니다.', teacher_busy: '선생님이 지금 상담 중입니다. 나중에 다시 시도하세요.',
    over_capacity: '서비스가 혼잡합니다. {s}초 후 다시 시도하세요.', request_sent: '요청을 보냈습니다. 선생님을 기다리는 중…',
    cancel: '취소', accept: '수락', decline: '거절', end: '상담 종료', leave: '나가기',
    mute: '음소거', unmute: '음소거 해제', camera_off: '카메라 끄기', camera_on: '카메라 켜기',
    go_online: '온라인으로 전환', go_offline: '오프라인으로 전환', you_are: '현재 {status} 상태입니다.',
    intro: '소개', save: '저장', saved: '저장했습니다.', incoming: '들어온 요청', none: '아직 없습니다.',
    history: '기록', teacher: '선생님', student: '학생', status: '상태', when: '시간', duration: '길이',
    recordings: '녹화', replay: '다시 보기', processing: '처리 중…',
    fav_online: '{name} 선생님이 온라인입니다.', declined: '선생님이 거절했습니다.', expired: '요청이 만료되었습니다.',
    canceled: '요청이 취소되었습니다.', ended: '상담이 끝났습니다.', interrupted: '미디어 서버 연결이 끊겼습니다. 다시 연결하는 중…',
    connecting: '연결 중…', connected: '연결됨', reconnecting: '연결이 끊겼습니다. 다시 연결하는 중…',
    waiting_other: '상대방을 기다리는 중…', new_request: '{name} 학생의 새 요청입니다.',
    users: '사용자', create: '만들기', role: '역할', display_name: '표시 이름', delete: '삭제',
    live: '진행 중인 상담', webhooks: '웹훅 전송', media_workers: '미디어 워커',
    not_allowed: '볼 수 없는 페이지입니다.', play: '재생', pause: '일시정지', timeline: '타임라인',
    replay_title: '상담 {id} 다시 보기', back: '뒤로', error: '문제가 생겼습니다: {m}',
    disk_use: '녹화가 {used} MB를 사용 중이며, 디스크 여유 공간은 {free} MB입니다.',
    download: '두 화면을 한 파일로 내려받기', combining: '합친 파일을 만드는 중… {p}%',
    chat: '채팅', send: '보내기', message: '메시지', you: '나', no_messages: '아직 메시지가 없습니다.',
    message_failed: '메시지를 보내지 못했습니다: {m}',
    share_screen: '화면 공유', stop_sharing: '공유 중지', screen: '화면',
    screen_failed: '화면을 공유할 수 없습니다: {m}', screen_of: '{who}의 화면',
    join_line: '줄 서기', leave_line: '줄에서 나가기', line_place: '대기 {pos}번째입니다 (앞에 {ahead}명).',
    line_title: '대기 줄', line_count: '{n}명 대기 중', close_line: '줄 닫기', open_line: '줄 열기',
    line_is_closed: '줄이 닫혀 있습니다.', line_full: '줄이 가득 찼습니다.', from_line: '대기 줄에서',
    your_turn: '차례입니다: {name} 선생님께 요청이 갔습니다.', line_teacher_left: '선생님이 오프라인이 되어 줄이 닫혔습니다.',
  },
};
let LANG = localStorage.getItem('lang') || (navigator.language || 'en').slice(0, 2);
if (!I18N[LANG]) LANG = 'en';

function t(key, vars) {
  let s = (I18N[LANG] && I18N[LANG][key]) || I18N.en[key] || key;
  for (const [k, v] of Object.entries(vars || {})) s = s.replaceAll('{' + k + '}', String(v));
  return s;
}

function applyI18n(root) {
  for (const el of (root || document).querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  document.documentElement.lang = LANG;
}

function setLang(lang) {
  LANG = I18N[lang] ? lang : 'en';
  localStorage.setItem('lang', LANG);
}
