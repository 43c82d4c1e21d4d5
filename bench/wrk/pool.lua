-- One-shot tokens (authorization codes): every request spends the next of this thread's share.
init = function(args) load_tokens() end
request = function()
  local token = table.remove(queue)
  if not token then return exhausted() end
  return with_token(token)
end
response = function(status, _, text)
  if status ~= expect then fail(status, text) end
end
