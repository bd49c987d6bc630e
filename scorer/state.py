"""Lead state in Redis: one Lua script applies score updates atomically.

Each lead has three keys sharing the hash tag ``{lead_id}``, so they live in
one Redis Cluster slot and one script may touch them together:
- ``<prefix>:{<lead>}:s``, a hash: the state described in `scorer.lead`;
- ``<prefix>:{<lead>}:seen``, a sorted set: recent update ids by event time;
- ``<prefix>:{<lead>}:out``, a hash: the outcome of each remembered update, so
  a redelivered event re-publishes exactly what the first delivery did.

A script call carries up to `ops_per_call` updates and applies them one after
another; on a cluster the updates of one call are those of one slot. The
calls of a batch go out in one pipeline: one round trip per batch.
"""

import logging
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import redis
from redis.crc import key_slot

from scorer.errors import StateStoreError
from scorer.events import Forget
from scorer.lead import (
    ActivityUpdate,
    FitUpdate,
    LeadState,
    Outcome,
    Params,
    Snapshot,
    Update,
    Window,
    evaluate,
)

log = logging.getLogger(__name__)

ARGS_PER_UPDATE = 8

# APPLY_UPDATES: the twin of scorer.lead.apply_activity / apply_fit. Keep the
# arithmetic in the same order as the Python so both give identical doubles.
# KEYS, three per update i: [3i-2] state hash, [3i-1] seen-ids sorted set,
#   [3i] outcomes hash.
# ARGV[1..6]: fit_weight, engagement_weight, threshold, hysteresis,
#   allowed_lateness_ms, dedupe_horizon_ms.
# ARGV from 7, eight per update: kind ('a' activity, 'f' fit, 'x' forget),
#   op_id, at_ms, then for 'a': rule, points, half_life_ms, cap, window_ms
#   (cap and window are '' for an uncapped rule); for 'f': the fit score.
# Returns one encoded Outcome per update; '' for a forget or a stale fit.
APPLY_UPDATES = r"""
local FW, EW = tonumber(ARGV[1]), tonumber(ARGV[2])
local T, H = tonumber(ARGV[3]), tonumber(ARGV[4])
local LATENESS, HORIZON = tonumber(ARGV[5]), tonumber(ARGV[6])

local function num(x) return string.format('%.17g', x) end

local function numbers(text)
  local out = {}
  for part in string.gmatch(text, '%S+') do out[#out + 1] = tonumber(part) end
  return out
end

local function load(key)
  local flat = redis.call('HGETALL', key)
  local st = {acc = {}, deleted = {}}
  for i = 1, #flat, 2 do
    local tag = string.sub(flat[i], 1, 2)
    if tag == 'b:' or tag == 'w:' then
      st.acc[flat[i]] = numbers(flat[i + 1])
    else
      st[flat[i]] = flat[i + 1]
    end
  end
  st.ref = tonumber(st.r)
  st.fit = tonumber(st.fit) or 0
  st.fa = tonumber(st.fa)
  st.mql = st.m == '1'
  st.score = tonumber(st.s) or 0
  return st
end

local function save(key, st)
  local args = {'HSET', key, 'fit', num(st.fit), 'm', st.mql and '1' or '0',
                's', num(st.score)}
  if st.ref then args[#args + 1] = 'r'; args[#args + 1] = num(st.ref) end
  if st.fa then args[#args + 1] = 'fa'; args[#args + 1] = num(st.fa) end
  if st.fo then args[#args + 1] = 'fo'; args[#args + 1] = st.fo end
  for name, a in pairs(st.acc) do
    local parts = {}
    for i = 1, #a do parts[i] = num(a[i]) end
    args[#args + 1] = name
    args[#args + 1] = table.concat(parts, ' ')
  end
  redis.call(unpack(args))
  if #st.deleted > 0 then redis.call('HDEL', key, unpack(st.deleted)) end
end

local function sorted_names(acc)
  local names = {}
  for name in pairs(acc) do names[#names + 1] = name end
  table.sort(names)
  return names
end

local function share(cap, raw)
  if raw == 0 then return 1 end
  return math.min(1, cap / math.abs(raw))
end

local function engagement(acc)
  local total = 0
  for _, name in ipairs(sorted_names(acc)) do
    local a = acc[name]
    if string.sub(name, 1, 2) == 'b:' then
      total = total + a[1]
    else
      total = total + share(a[4], a[1]) * a[2]
    end
  end
  return total
end

local function advance(st, to)
  local elapsed = to - st.ref
  for name, a in pairs(st.acc) do
    if string.sub(name, 1, 2) == 'b:' then
      a[1] = a[1] * 2 ^ (-elapsed / a[2])
    else
      a[2] = a[2] * 2 ^ (-elapsed / a[3])
    end
  end
  st.ref = to
end

local function close_windows(st)
  for _, name in ipairs(sorted_names(st.acc)) do
    local w = st.acc[name]
    if string.sub(name, 1, 2) == 'w:' and not (w[5] + LATENESS > st.ref) then
      local base = 'b:' .. string.match(name, '^w:([^:]+):')
      local b = st.acc[base] or {0, w[3]}
      st.acc[base] = {b[1] + share(w[4], w[1]) * w[2], w[3]}
      st.acc[name] = nil
      st.deleted[#st.deleted + 1] = name
    end
  end
end

local function add_points(st, at, rule, points, hl, cap, window)
  local worth = points * 2 ^ (-(st.ref - at) / hl)
  if cap == nil then
    local name = 'b:' .. rule
    local b = st.acc[name] or {0, hl}
    st.acc[name] = {b[1] + worth, hl}
    return worth, false
  end
  local bucket = math.floor(at / window)
  local name = 'w:' .. rule .. ':' .. string.format('%d', bucket)
  local w = st.acc[name]
  if w == nil then
    w = {0, 0, hl, cap, (bucket + 1) * window}
    st.acc[name] = w
  end
  local before = share(w[4], w[1]) * w[2]
  w[1] = w[1] + points
  w[2] = w[2] + worth
  local after = share(w[4], w[1]) * w[2]
  return after - before, math.abs(w[1]) > w[4]
end

local function settle(st, previous, applied, lost, capped, late)
  local eng = engagement(st.acc)
  local score = FW * st.fit + EW * eng
  local was = st.mql
  if was then st.mql = score >= T - H else st.mql = score >= T end
  st.score = score
  return table.concat({'applied', num(previous), num(score), num(st.fit),
    num(eng), num(applied), num(lost), capped and '1' or '0', tostring(late),
    was and '1' or '0', st.mql and '1' or '0', num(st.ref or 0)}, '|')
end

local function as_duplicate(encoded)
  return 'duplicate' .. string.match(encoded, '^[^|]*(|.*)$')
end

local function remembered(st, seen, outs, op_id)
  if st.ref == nil then return nil end
  local at = redis.call('ZSCORE', seen, op_id)
  if not at or tonumber(at) < st.ref - HORIZON then return nil end
  local encoded = redis.call('HGET', outs, op_id)
  if not encoded then return nil end
  return as_duplicate(encoded)
end

local function forget_old(st, seen, outs)
  local limit = '(' .. num(st.ref - HORIZON)
  local old = redis.call('ZRANGEBYSCORE', seen, '-inf', limit)
  for i = 1, #old, 500 do
    redis.call('HDEL', outs, unpack(old, i, math.min(i + 499, #old)))
  end
  if #old > 0 then redis.call('ZREMRANGEBYSCORE', seen, '-inf', limit) end
end

local function activity(key, seen, outs, op_id, at, a)
  local st = load(key)
  local again = remembered(st, seen, outs, op_id)
  if again then return again end

  local previous, lost = st.score, 0
  if st.ref == nil then st.ref = at end
  if at > st.ref then
    local before = engagement(st.acc)
    advance(st, at)
    lost = before - engagement(st.acc)
  end
  local behind, late = st.ref - at, 0
  if behind > 0 then late = (behind <= LATENESS) and 1 or 2 end

  local cap, window = tonumber(a[4]), tonumber(a[5])
  local applied, capped = add_points(st, at, a[1], tonumber(a[2]),
                                     tonumber(a[3]), cap, window)
  close_windows(st)
  local encoded = settle(st, previous, applied, lost, capped, late)

  save(key, st)
  redis.call('ZADD', seen, at, op_id)
  redis.call('HSET', outs, op_id, encoded)
  forget_old(st, seen, outs)
  return encoded
end

local function fit_update(key, at, fit)
  local st = load(key)
  if st.fa ~= nil and at <= st.fa then
    if at == st.fa and st.fo then return as_duplicate(st.fo) end
    return ''
  end
  local previous = st.score
  local change = fit - st.fit
  st.fit = fit
  st.fa = at
  local encoded = settle(st, previous, change, 0, false, 0)
  if st.ref == nil then
    encoded = string.gsub(encoded, '|[^|]*$', '|' .. num(at))
  end
  st.fo = encoded
  save(key, st)
  return encoded
end

local results = {}
for i = 0, #KEYS / 3 - 1 do
  local key, seen, outs = KEYS[3 * i + 1], KEYS[3 * i + 2], KEYS[3 * i + 3]
  local base = 6 + ARGS_PER_UPDATE * i
  local kind, op_id, at = ARGV[base + 1], ARGV[base + 2], tonumber(ARGV[base + 3])
  if kind == 'a' then
    local rule = {ARGV[base + 4], ARGV[base + 5], ARGV[base + 6], ARGV[base + 7],
                  ARGV[base + 8]}
    results[#results + 1] = activity(key, seen, outs, op_id, at, rule)
  elseif kind == 'f' then
    results[#results + 1] = fit_update(key, at, tonumber(ARGV[base + 4]))
  else
    redis.call('DEL', key, seen, outs)
    results[#results + 1] = ''
  end
end
return results
""".replace("ARGS_PER_UPDATE", str(ARGS_PER_UPDATE))


class RedisStore:
    """The production lead store: Redis (standalone or cluster)."""

    def __init__(
        self,
        client: "redis.Redis | redis.RedisCluster",
        params: Params,
        key_prefix: str = "scorer",
        ops_per_call: int = 64,
    ) -> None:
        self.client = client
        self.params = params
        self.prefix = key_prefix
        self.ops_per_call = ops_per_call
        self.cluster = isinstance(client, redis.RedisCluster)
        self._global_args = [
            repr(params.fit_weight),
            repr(params.engagement_weight),
            repr(params.threshold),
            repr(params.hysteresis),
            str(params.lateness_ms),
            str(params.dedupe_horizon_ms),
        ]
        self._sha = ""

    def load_script(self) -> None:
        """Load the script (again: after a restart or SCRIPT FLUSH)."""
        try:
            self._sha = str(self.client.script_load(APPLY_UPDATES))
        except redis.RedisError as exc:
            raise StateStoreError(f"cannot load the scoring script: {exc}") from exc

    def keys(self, lead_id: str) -> tuple[str, str, str]:
        tagged = f"{self.prefix}:{{{lead_id}}}"
        return f"{tagged}:s", f"{tagged}:seen", f"{tagged}:out"

    def apply(self, updates: Sequence[Update]) -> list[Outcome | None]:
        """Apply a batch, in order per lead; one pipeline round trip."""
        if not updates:
            return []
        if not self._sha:
            self.load_script()
        calls = self._calls(updates)
        replies = self._execute(updates, calls)
        return self._outcomes(len(updates), calls, replies)

    def snapshot(self, lead_id: str, as_of_ms: int | None = None) -> Snapshot | None:
        try:
            raw = self.client.hgetall(self.keys(lead_id)[0])
        except redis.RedisError as exc:
            raise StateStoreError(f"cannot read lead_id={lead_id}: {exc}") from exc
        if not raw:
            return None
        return evaluate(lead_id, parse_state(raw), self.params, as_of_ms)

    def lead_ids(self) -> Iterator[str]:
        pattern = f"{self.prefix}:{{*}}:s"
        for key in self.client.scan_iter(match=pattern, count=1000):
            text = key.decode() if isinstance(key, bytes) else str(key)
            yield text[len(self.prefix) + 2 : -3]

    def _calls(self, updates: Sequence[Update]) -> list[list[int]]:
        """Group update positions into script calls, keeping per-lead order."""
        groups: dict[int, list[int]] = defaultdict(list)
        for position, update in enumerate(updates):
            slot = key_slot(self.keys(update.lead_id)[0].encode())
            groups[slot if self.cluster else 0].append(position)
        size = self.ops_per_call
        return [
            members[start : start + size]
            for members in groups.values()
            for start in range(0, len(members), size)
        ]

    def _execute(self, updates: Sequence[Update], calls: list[list[int]]) -> list[Any]:
        for attempt in (1, 2):
            pipe = self.client.pipeline(transaction=False)
            for call in calls:
                self._queue(pipe, [updates[position] for position in call])
            try:
                replies = pipe.execute(raise_on_error=False)
            except redis.RedisError as exc:
                raise StateStoreError(f"Redis pipeline failed: {exc}") from exc
            missing = any(
                isinstance(r, redis.exceptions.NoScriptError) for r in replies
            )
            if not missing:
                return replies
            # SCRIPT FLUSH or a restart dropped the script. Calls that did run
            # are remembered by their update ids, so running all again is safe.
            log.warning(
                "scoring script missing in Redis; reloading attempt=%d", attempt
            )
            self.load_script()
        raise StateStoreError("the scoring script keeps disappearing from Redis")

    def _queue(self, pipe: Any, call: list[Update]) -> None:
        keys: list[str] = []
        args: list[str] = list(self._global_args)
        for update in call:
            keys.extend(self.keys(update.lead_id))
            args.extend(_update_args(update))
        pipe.evalsha(self._sha, len(keys), *keys, *args)

    def _outcomes(
        self, count: int, calls: list[list[int]], replies: list[Any]
    ) -> list[Outcome | None]:
        outcomes: list[Outcome | None] = [None] * count
        for call, reply in zip(calls, replies, strict=True):
            if isinstance(reply, Exception):
                raise StateStoreError(f"scoring script failed: {reply}") from reply
            for position, encoded in zip(call, reply, strict=True):
                text = encoded.decode() if isinstance(encoded, bytes) else encoded
                outcomes[position] = Outcome.decode(text) if text else None
        return outcomes


def _update_args(update: Update) -> list[str]:
    if isinstance(update, ActivityUpdate):
        rule = update.rule
        return [
            "a",
            update.op_id,
            str(update.at_ms),
            rule.name,
            repr(rule.points),
            str(rule.half_life_ms),
            "" if rule.cap_points is None else repr(rule.cap_points),
            "" if rule.cap_window_ms is None else str(rule.cap_window_ms),
        ]
    if isinstance(update, FitUpdate):
        return ["f", update.op_id, str(update.at_ms), repr(update.fit), "", "", "", ""]
    assert isinstance(update, Forget)
    return ["x", "", "0", "", "", "", "", ""]


def parse_state(raw: dict[Any, Any]) -> LeadState:
    """A lead's Redis hash as the `LeadState` the Python model works on."""
    fields = {_text(k): _text(v) for k, v in raw.items()}
    state = LeadState(
        ref_ms=int(float(fields["r"])) if "r" in fields else None,
        fit=float(fields.get("fit", "0")),
        fit_at_ms=int(float(fields["fa"])) if "fa" in fields else None,
        fit_outcome=Outcome.decode(fields["fo"]) if "fo" in fields else None,
        is_mql=fields.get("m") == "1",
        score=float(fields.get("s", "0")),
    )
    for name, value in fields.items():
        parts = [float(p) for p in value.split()] if name[:2] in ("b:", "w:") else []
        if name.startswith("b:"):
            state.folded[name] = (parts[0], int(parts[1]))
        elif name.startswith("w:"):
            state.windows[name] = Window(
                parts[0], parts[1], int(parts[2]), parts[3], int(parts[4])
            )
    return state


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
