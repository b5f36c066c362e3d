"""The shared cache's Lua scripts: each touches one customer's hash, ``KEYS[1]``, only.

The hash's fields (see ``asapp_auth._redis_keys``): ``v`` the entry (``"<gen>|<sealed>"``) and
``vx`` its deadline (``"0"``: none); ``l`` the refresh lock's token and ``lx`` its deadline;
``g`` the tombstone's deadline. Deadlines are milliseconds on the clock of the node that holds
the key, read inside the script (``TIME``), so no host's clock and no other shard's counts; a
field past its deadline is gone, and the key expires with its last field. An evicted key (a
managed Redis under ``volatile-lru``) loses all of them at once: a miss, and a lost lock, which
the store script notices.

Scripts are run with ``EVALSHA``; a node that does not have one (restarted, or a replica just
promoted: scripts are not replicated) is sent the script itself with ``EVAL``, which caches it on
that node only. redis-py's own reload loads every primary, which fails while one is down.
"""

from __future__ import annotations

import hashlib
from typing import Any

from redis.exceptions import NoScriptError

__all__ = ["CLAIM", "FORGET", "READ", "RELEASE", "RENEW", "SHARE", "STORE", "Script"]

_LIB = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function at(now, ms) return string.format('%.0f', now + tonumber(ms)) end
local function load(k, now)
  local f = redis.call('HMGET', k, 'v', 'vx', 'l', 'lx', 'g')
  local e = {}
  if f[1] and (f[2] == '0' or (tonumber(f[2]) or 0) > now) then e.v, e.vx = f[1], f[2] end
  if f[3] and (tonumber(f[4]) or 0) > now then e.l, e.lx = f[3], f[4] end
  if f[5] and (tonumber(f[5]) or 0) > now then e.g = f[5] end
  return e
end
-- Write back what lives. No DEL first: inside a script, a key of a slot being migrated that is
-- gone from this node cannot be written again ("non local key").
local function save(k, e)
  local set, dead, last, forever = {}, {}, 0, false
  local function put(f, v)
    if v then set[#set + 1] = f; set[#set + 1] = v else dead[#dead + 1] = f end
  end
  put('v', e.v); put('vx', e.v and e.vx); put('l', e.l); put('lx', e.l and e.lx); put('g', e.g)
  if e.v then
    if e.vx == '0' then forever = true else last = math.max(last, tonumber(e.vx)) end
  end
  if e.l then last = math.max(last, tonumber(e.lx)) end
  if e.g then last = math.max(last, tonumber(e.g)) end
  if #set > 0 then redis.call('HSET', k, unpack(set)) end
  if #dead > 0 then redis.call('HDEL', k, unpack(dead)) end
  if #set == 0 then return end
  if forever then redis.call('PERSIST', k)
  else redis.call('PEXPIREAT', k, string.format('%.0f', last)) end
end
-- nil when there is no entry, false when its generation prefix is refused (see _redis_keys).
local function gen(v)
  if not v then return nil end
  local digits = string.match(v, '^(%d+)|')
  if not digits or #digits > 15 then return false end
  return tonumber(digits)
end
local function publish(command, channel, notice)
  if command ~= '' then redis.call(command, channel, notice) end
end
local k = KEYS[1]
local now = now_ms()
local e = load(k, now)
"""

# The node's time in ms, and the entry if there is one (Lua ends a list at its first nil).
_READ = "return {now, e.v}"
# Take the lock (ARGV: token, ttl ms) unless another holds it: {1 taken or 0, the entry's head}.
_CLAIM = """
local head = e.v and string.sub(e.v, 1, 20) or ''
if e.l then return {0, head} end
e.l, e.lx = ARGV[1], at(now, ARGV[2])
save(k, e)
return {1, head}
"""
# Store a produced entry (ARGV: token, value, ttl ms or '0', its generation, the SHA-1 of an entry
# the caller refused or '', publish command, channel, notice): only while the lock is ours,
# never after the customer was cleared, never over a newer generation. Releases the lock in any
# case. 1 stored, 0 lock lost, 2 cleared, 3 older than what Redis holds, 4 stored over an entry
# refused as tampered: one whose prefix is refused here, or the very value the caller refused.
_STORE = """
if e.l ~= ARGV[1] then return 0 end
e.l, e.lx = nil, nil
if e.g then save(k, e) return 2 end
local current = gen(e.v)
local refused = current == false or (e.v ~= nil and ARGV[5] ~= '' and redis.sha1hex(e.v) == ARGV[5])
if current and not refused and current >= tonumber(ARGV[4]) then save(k, e) return 3 end
e.v = ARGV[2]
if ARGV[3] == '0' then e.vx = '0' else e.vx = at(now, ARGV[3]) end
save(k, e)
publish(ARGV[6], ARGV[7], ARGV[8])
if refused then return 4 end
return 1
"""
# Share a copy that is still good (ARGV: value, ttl ms or '0', generation, publish command,
# channel, notice) where Redis lost it or holds an older one: no lock needed, so never over an
# entry refused as tampered (4), which is replaced under the lock. 1 stored, 2 cleared, 3 older.
_SHARE = """
if e.g then return 2 end
local current = gen(e.v)
if current == false then return 4 end
if current and current >= tonumber(ARGV[3]) then return 3 end
e.v = ARGV[1]
if ARGV[2] == '0' then e.vx = '0' else e.vx = at(now, ARGV[2]) end
save(k, e)
publish(ARGV[4], ARGV[5], ARGV[6])
return 1
"""
# Keep the lock (ARGV: token, ttl ms) while it is ours: 1, else 0.
_RENEW = """
if e.l ~= ARGV[1] then return 0 end
e.lx = at(now, ARGV[2])
save(k, e)
return 1
"""
# Let go of the lock (ARGV: token) if it is ours.
_RELEASE = """
if e.l ~= ARGV[1] then return 0 end
e.l, e.lx = nil, nil
save(k, e)
return 1
"""
# A customer cleared (ARGV: tombstone ms, publish command, channel, notice): its entry goes, and
# a tombstone keeps a refresh under way elsewhere from storing it again.
_FORGET = """
e.v, e.vx = nil, nil
e.g = at(now, ARGV[1])
save(k, e)
publish(ARGV[2], ARGV[3], ARGV[4])
return 1
"""


class Script:
    """One script on one customer's key: ``EVALSHA``, or ``EVAL`` where the node lacks it."""

    def __init__(self, body: str) -> None:
        self.body = _LIB + body
        self.sha = hashlib.sha1(self.body.encode(), usedforsecurity=False).hexdigest()

    def __call__(self, client: Any, key: str, *args: object) -> Any:
        try:
            return client.evalsha(self.sha, 1, key, *args)
        except NoScriptError:
            return client.eval(self.body, 1, key, *args)


READ, CLAIM, STORE, SHARE = Script(_READ), Script(_CLAIM), Script(_STORE), Script(_SHARE)
RENEW, RELEASE, FORGET = Script(_RENEW), Script(_RELEASE), Script(_FORGET)
