# One truth per transaction. A request describes what it moves several times over — amountStr,
# destAddress, each destinations[] entry, sourceId, the key paths and the raw transaction — and a
# rule that reads one of them judges only that one. The server derives one view from all of them
# (input.context.transfer) and lists every disagreement in its `conflicts`:
#
#   view        {operation, asset, amount, source {type, id, account}, destinations [{type, id,
#               address, amount}], raw {kind, pays, change} | null, conflicts [string]}
#   conflicts   the view's conflicts: a policy that approves anything refuses these
#   request     the request as every other rule reads it: its descriptive fields replaced by the
#               view's, so a limit, a TAP rule or a deny-list reads what is checked
#
# Unit tests that build an input by hand get the same view from the `transfer.view` builtin.
package lib.transfer

import rego.v1

view := input.context.transfer if is_object(input.context.transfer)

else := transfer.view(input.request, assets)

# The asset table, read by its full path: `object.get(data, …)` would make every rule depend on
# every other (OPA refuses that as recursion).
assets := data.rawtx.assets if is_object(data.rawtx.assets)

else := {}

conflicts := {c | some c in view.conflicts}

# Derived natively, once per request; lib/transfer_spec.rego says the same in Rego.
request := transfer.request(input.request, view)
