-- wrk script: each request takes the next path from the file named by the first
-- script argument, so a run cycles through many different session ids or pages.
local paths = {}
local index = 0

function init(args)
  for line in io.lines(args[1]) do
    paths[#paths + 1] = line
  end
  -- Threads start at different offsets so they do not request the same rows in step.
  index = math.random(#paths) - 1
end

function request()
  index = index % #paths + 1
  return wrk.format("GET", paths[index])
end
