-- Compare-and-set of the registry document (registry_store/store.rs), atomic in Redis.
-- KEYS[1] the current version (integer), KEYS[2] the current content hash,
-- KEYS[3] the history list (newest first, JSON documents).
-- ARGV[1] the base version the caller read, ARGV[2] the new content hash,
-- ARGV[3] the document as a JSON object without its version, ARGV[4] how many versions to
-- keep, ARGV[5] the channel announcing a new version.
-- Returns {1, new version} written, {0, current} stale base, {2, current} same content.
-- The same decisions as store.rs's `decide`, which the unit tests pin down.
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current ~= tonumber(ARGV[1]) then return {0, current} end
if current > 0 and redis.call('GET', KEYS[2]) == ARGV[2] then return {2, current} end
local version = current + 1
redis.call('SET', KEYS[1], version)
redis.call('SET', KEYS[2], ARGV[2])
redis.call('LPUSH', KEYS[3], '{"version":' .. version .. ',' .. string.sub(ARGV[3], 2))
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[4]) - 1)
redis.call('PUBLISH', ARGV[5], version)
return {1, version}
