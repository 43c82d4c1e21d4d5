-- The same request every time (discovery, JWKS, client_credentials, userinfo, introspection):
-- wrk formats it once; statuses >= 400 count as errors, and any other than BENCH_EXPECT fail.
init = function(args)
  fixed = wrk.format(method, path, headers, body)
end
request = function() return fixed end
response = function(status, _, text)
  if status ~= expect then fail(status, text) end
end
