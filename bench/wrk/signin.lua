-- Password sign-in, two requests each: GET the form (its session cookie and CSRF token), then POST
-- the form with a password; the "signed in" page or a redirect is a sign-in. BENCH_TOKENS holds "email password" lines.
completed = 0
ready = {}
next_user = 1
init = function(args) load_tokens() end
request = function()
  local form = table.remove(ready)
  if not form then return wrk.format("GET", path) end
  local user = queue[next_user]
  next_user = next_user % #queue + 1
  local email, password = string.match(user, "^(%S+) (.*)$")
  local encode = function(s) return (string.gsub(s, "[^%w%-_%.~]", function(c) return string.format("%%%02X", string.byte(c)) end)) end
  local post = "csrf_token=" .. encode(form.csrf) .. "&username=" .. encode(email) .. "&password=" .. encode(password)
  return wrk.format("POST", path, {["Content-Type"] = "application/x-www-form-urlencoded", ["Cookie"] = form.cookie}, post)
end
response = function(status, response_headers, text)
  -- The form page answers the GET, the "Signed in" notice or a redirect the POST; any other answer
  -- is a failure (the layout suffixes every title with " · brand", so only the start is matched).
  if status == 200 and string.find(text, "<title>Sign in ", 1, true) then
    local cookie = response_headers["Set-Cookie"] or response_headers["set-cookie"] or ""
    local csrf = string.match(text, 'name="csrf_token" type="hidden" value="([^"]+)"')
    if csrf and cookie ~= "" then
      table.insert(ready, {cookie = string.match(cookie, "^[^;]+"), csrf = csrf})
    else
      fail(status, "no form: " .. text)
    end
  elseif (status == 200 and string.find(text, "<title>Signed in ", 1, true)) or status == 302 or status == 303 then
    completed = completed + 1
  else
    fail(status, text)
  end
end
