'use strict'
// The upload page: tus-js-client (served beside it) uploads each chosen or dropped file to the
// tus endpoint, in one PATCH. It keeps each upload's URL in localStorage under the file's
// fingerprint (name, type, size, last modification, endpoint), so a reload, a closed tab or a
// lost connection resumes where the server's offset says, once the same file is chosen again.
// Rows carry data-state, data-sent, data-total, data-resumed-at and data-sha256 for tests.
;(() => {
  const $ = (id) => document.getElementById(id)
  const endpoint = location.origin + document.body.dataset.endpoint
  const dirUrl = document.body.dataset.dir
  const KEY = 'rangeserve-upload-token'
  const token = $('token')
  const remember = $('remember')
  const folder = $('folder')
  const input = $('files')
  const drop = $('drop')
  const msg = $('msg')

  // The token: in sessionStorage (this tab), or localStorage with "remember"; nowhere else.
  token.value = localStorage.getItem(KEY) || sessionStorage.getItem(KEY) || ''
  remember.checked = localStorage.getItem(KEY) !== null
  const keep = () => {
    const t = token.value.trim()
    localStorage.removeItem(KEY)
    sessionStorage.removeItem(KEY)
    if (t) (remember.checked ? localStorage : sessionStorage).setItem(KEY, t)
  }
  token.addEventListener('change', keep)
  remember.addEventListener('change', keep)
  folder.value = new URLSearchParams(location.search).get('dir') || ''
  // The form only groups the fields: Enter in one of them submits nothing.
  $('form').addEventListener('submit', (e) => e.preventDefault())

  input.addEventListener('change', () => {
    start([...input.files])
    input.value = ''
  })
  drop.addEventListener('dragover', (e) => {
    e.preventDefault()
    drop.classList.add('over')
  })
  drop.addEventListener('dragleave', () => drop.classList.remove('over'))
  drop.addEventListener('drop', (e) => {
    e.preventDefault()
    drop.classList.remove('over')
    start([...e.dataTransfer.files])
  })

  const human = (n) => {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
    let i = 0
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024
      i++
    }
    return (i ? n.toFixed(1) : String(Math.round(n))) + ' ' + units[i]
  }
  const el = (tag, text) => {
    const e = document.createElement(tag)
    if (text !== undefined) e.textContent = text
    return e
  }

  async function start(files) {
    if (!files.length) return
    const t = token.value.trim()
    if (!t) {
      msg.textContent = 'Enter the upload token first.'
      token.focus()
      return
    }
    keep()
    // The token is checked once, before any upload starts: a refused resumption would make
    // tus-js-client forget the upload it could have resumed.
    let r
    try {
      r = await fetch(endpoint, {
        method: 'OPTIONS',
        headers: { Authorization: 'Bearer ' + t },
        cache: 'no-store',
      })
    } catch (e) {
      msg.textContent = 'The server cannot be reached (' + e.message + '): try again.'
      return
    }
    if (r.status === 401) {
      msg.textContent = 'The token was refused (401): check it.'
      return
    }
    if (!r.ok) {
      msg.textContent = 'The upload endpoint answered ' + r.status + '.'
      return
    }
    msg.textContent = ''
    for (const f of files) upload(f, t)
  }

  function why(err) {
    const res = err.originalResponse
    const s = res ? res.getStatus() : 0
    const text = res ? String(res.getBody() || '').trim() : ''
    if (s === 401) return 'the token was refused (401)'
    if (s === 409) return 'a file of that name is already there, and the server does not overwrite (409)'
    if (s === 413) return 'larger than the server takes (413)'
    if (s === 507) return 'the server has no space left (507)'
    if (s) return 'refused: ' + (text || s)
    return 'the connection was lost and retries gave up: choose the file again to resume'
  }

  function upload(file, t) {
    const sub = folder.value.trim().replace(/^\/+|\/+$/g, '')
    const name = sub ? sub + '/' + file.name : file.name
    const tr = el('tr')
    const progress = el('progress')
    progress.max = file.size || 1
    progress.value = 0
    const cells = [el('td', name), el('td'), el('td'), el('td'), el('td')]
    cells[1].append(progress)
    cells[2].className = cells[3].className = 'n'
    tr.append(...cells)
    $('rows').append(tr)
    const state = (s, text) => {
      tr.dataset.state = s
      const at = tr.dataset.resumedAt
      cells[4].textContent = text + (at === undefined ? '' : ' (resumed at ' + at + ' bytes)')
    }
    let last = null
    const up = new tus.Upload(file, {
      endpoint,
      headers: { Authorization: 'Bearer ' + t },
      metadata: { filename: name, filetype: file.type || 'application/octet-stream' },
      retryDelays: [0, 1000, 3000, 5000, 10000, 20000],
      removeFingerprintOnSuccess: true,
      // Retry what may pass later (a lost connection, a 5xx, another request still appending),
      // not a refusal (a bad name, a file that is there, a size over the limit).
      onShouldRetry(err) {
        const res = err.originalResponse
        const s = res ? res.getStatus() : 0
        const method = err.originalRequest ? err.originalRequest.getMethod() : ''
        return s === 0 || (s >= 500 && s !== 507) || s === 423 || (s === 409 && method !== 'POST')
      },
      // A HEAD is a resumption: the server says where its bytes end.
      onAfterResponse(req, res) {
        if (req.getMethod() === 'HEAD' && res.getStatus() === 200) {
          tr.dataset.resumedAt = Number(res.getHeader('Upload-Offset'))
          state('resuming', 'resuming')
        }
      },
      onProgress(sent, total) {
        progress.max = total || 1
        progress.value = sent
        tr.dataset.sent = sent
        tr.dataset.total = total
        cells[2].textContent = human(sent) + ' / ' + human(total)
        const now = performance.now()
        if (!last) last = { t: now, n: sent }
        if (now - last.t >= 1000) {
          cells[3].textContent = human(((sent - last.n) * 1000) / (now - last.t)) + '/s'
          last = { t: now, n: sent }
        }
        state('uploading', 'uploading')
      },
      onSuccess() {
        cells[3].textContent = ''
        published(name, tr, cells[4], state)
      },
      onError(err) {
        cells[3].textContent = ''
        state('error', why(err))
      },
    })
    state('starting', 'starting')
    up.findPreviousUploads().then((previous) => {
      const mine = previous
        .filter((p) => p.metadata && p.metadata.filename === name)
        .sort((a, b) => (a.creationTime < b.creationTime ? 1 : -1))
      if (mine.length) up.resumeFromPreviousUpload(mine[0])
      up.start()
    })
  }

  // The published file's SHA-256 is its ETag: one HEAD (downloads need no token).
  async function published(name, tr, cell, state) {
    const url = dirUrl + name.split('/').map(encodeURIComponent).join('/')
    state('checking', 'published; checking')
    let etag = null
    try {
      const r = await fetch(url, { method: 'HEAD', cache: 'no-store' })
      if (r.ok) etag = r.headers.get('ETag')
    } catch (e) {}
    const hex = etag && /^"[0-9a-f]{64}"$/.test(etag) ? etag.slice(1, -1) : null
    state('done', 'done')
    const a = el('a', name)
    a.href = url
    cell.append(' ', a)
    if (hex) {
      tr.dataset.sha256 = hex
      const code = el('code', hex)
      const copy = el('button', 'copy')
      copy.type = 'button'
      // The clipboard is there on https and localhost; elsewhere the hash is selected instead.
      copy.addEventListener('click', () => {
        const select = () => getSelection().selectAllChildren(code)
        if (!navigator.clipboard) return select()
        navigator.clipboard.writeText(hex).then(() => (copy.textContent = 'copied'), select)
      })
      cell.append(el('br'), 'SHA-256 ', code, ' ', copy)
    } else {
      cell.append(' (its SHA-256 is not known yet: see its ETag)')
    }
  }
})()
