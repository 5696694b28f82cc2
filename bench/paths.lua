-- wrk script: each request takes the next path from the file named by the first
-- script argument, so a run cycles through many different session ids or pages. A line
-- "path<TAB>etag" sends that entity tag in If-None-Match (a conditional request).
local paths = {}
local index = 0

function init(args)
  for line in io.lines(args[1]) do
    local path, etag = line:match("^([^\t]+)\t(.+)$")
    paths[#paths + 1] = { path or line, etag }
  end
  -- Threads start at different offsets so they do not request the same rows in step.
  index = math.random(#paths) - 1
end

function request()
  index = index % #paths + 1
  local path, etag = paths[index][1], paths[index][2]
  if etag == nil then
    return wrk.format("GET", path)
  end
  -- Headers given to wrk.format replace wrk's own (-H), so copy those first.
  local headers = {}
  for name, value in pairs(wrk.headers) do
    headers[name] = value
  end
  headers["If-None-Match"] = etag
  return wrk.format("GET", path, headers)
end
