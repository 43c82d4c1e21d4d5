-- Closed-loop refresh rotation: every answer's new refresh_token goes back to the thread's pool
-- and is presented by the next request, so each chain has at most one request in flight (a used
-- token is spent). A thread starts with at least as many chains as it has connections.
completed = 0
init = function(args) load_tokens() end
request = function()
  local token = table.remove(queue, 1)
  if not token then return exhausted() end
  return with_token(token)
end
response = function(status, _, text)
  local token = status == expect and string.match(text, '"refresh_token"%s*:%s*"([^"]+)"')
  if token then
    table.insert(queue, token)
    completed = completed + 1
  else
    fail(status, text)
  end
end
