-- One refresh of a token family, atomically (issue 12): the original gateway's GET, DEL,
-- SETEX let two concurrent refreshes both succeed and fork the family.
--
-- KEYS[1] stagedoor:refresh:<fid>          hash: cur (jti), prev (jti), at (ms of the rotation)
-- KEYS[2] stagedoor:revoked:family:<fid>   the family's revocation entry (value: expiry, unix s)
-- ARGV: presented jti, successor jti, now (ms), grace (ms), fid, family expiry (unix s),
--       seconds until it (> 0)
--
-- Replies {outcome, jti, at}: 'rotated' (the presented jti was current: the successor is
-- now), 'grace' (the immediate predecessor within the grace: the same successor again),
-- 'reused' (an older jti, the predecessor after the grace, or a family Redis does not
-- know: the family is revoked here and announced), 'revoked' (revoked before).
local family, revoked = KEYS[1], KEYS[2]
local jti, successor, now, grace = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local fid, family_exp, ttl = ARGV[5], ARGV[6], tonumber(ARGV[7])

if redis.call('EXISTS', revoked) == 1 then
  return {'revoked', '', '0'}
end
local cur = redis.call('HGET', family, 'cur')
-- A family begins with the token whose jti is its id; any other jti of a family Redis has
-- no record of is treated as reuse (the record expired with the family, or Redis lost it):
-- failing closed logs the user out rather than letting an old token start over.
if (cur == jti) or (not cur and jti == fid) then
  redis.call('HSET', family, 'cur', successor, 'prev', jti, 'at', now)
  redis.call('EXPIRE', family, ttl)
  return {'rotated', successor, tostring(now)}
end
if cur and jti == redis.call('HGET', family, 'prev') then
  local at = tonumber(redis.call('HGET', family, 'at'))
  if at and now - at <= grace then
    return {'grace', cur, tostring(at)}
  end
end
redis.call('SET', revoked, family_exp, 'EX', ttl)
redis.call('PUBLISH', 'stagedoor:revocations', 'family:' .. fid)
if cur then
  redis.call('HSET', family, 'revoked_at', now)
end
return {'reused', cur or '', '0'}
