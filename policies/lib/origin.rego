# Proof of origin: the transaction was asked for by our own backend, not by whoever holds the API
# key. With [origin] configured, the server reads a token signed by a backend key from the
# transaction (its note, externalTxId or an extraParameters field) and gives every transaction
# request input.context.origin:
#
#   {present, verified, key, claims, mismatches: [claim names], reused, error}
#
# `verified`: a configured key signed it with its own algorithm, it has its claims and is inside
# its time window. `mismatches`: the claims (asset, amount, source, destination, operation,
# externalTxId) that do not match the transaction's canonical view. `reused`: another transaction
# was approved with the same jti (the server binds a jti to the first transaction approved with it).
#
#   violations contains sprintf("origin: %s", [p]) if some p in origin.problems(tx)
package lib.origin

import rego.v1

# problems(request): why the transaction does not carry a valid, matching, unused proof of origin;
# empty when it does. Every field is read with a default: a missing view is a problem, not silence.
problems(request) := all_problems if is_object(request)

else := {"the request is not an object"}

view := object.get(input, ["context", "origin"], {})

all_problems contains "the server inspected no origin token: [origin] is not configured" if view == {}

all_problems contains sprintf("no valid origin token: %s", [object.get(view, "error", "unknown error")]) if {
	view != {}
	object.get(view, "verified", false) != true
}

all_problems contains sprintf("the origin token does not match the transaction's %s", [m]) if {
	object.get(view, "verified", false) == true
	some m in object.get(view, "mismatches", [])
}

all_problems contains "the origin token was already used by another transaction" if {
	object.get(view, "verified", false) == true
	object.get(view, "reused", true) != false
}
