# The specification of lib/transfer's `request`, in Rego: what the `transfer.request` builtin
# computes natively at a tenth of the cost. tests/rawtx.rs checks that both agree on every decision
# of the starter's fixtures and their mutants.
#
# Its own package: a rule referenced through an import (`transfer.request`) makes regorus evaluate
# every rule of the imported package, so a package keeps only what its users read.
package lib.transfer_spec

import data.lib.transfer
import rego.v1

request := object.union(object.remove(input.request, [
	"operation", "asset", "amountStr", "sourceType", "sourceId",
	"destType", "destId", "destAddress", "destinations",
]), object.union(described, {"destinations": destinations | count(listed) > 0}))

listed := [d | some d in object.get(input.request, "destinations", []); is_object(d)] if is_array(input.request.destinations)

else := []

# The view's fields under the request's names; a field the view does not know is left out, so
# reading it with a default still says "<missing>".
described := {name: value |
	some name, value in {
		"operation": transfer.view.operation,
		"asset": transfer.view.asset,
		"amountStr": transfer.view.amount,
		"sourceType": transfer.view.source.type,
		"sourceId": transfer.view.source.id,
		"destType": first.type,
		"destId": first.id,
		"destAddress": first.address,
	}
	value != null
}

first := transfer.view.destinations[0]

destinations := [object.union(object.remove(d, ["dstAddress", "dstType", "dstId", "amountNativeStr"]), {name: value |
	some name, value in {
		"dstAddress": transfer.view.destinations[i].address,
		"dstType": transfer.view.destinations[i].type,
		"dstId": transfer.view.destinations[i].id,
		"amountNativeStr": transfer.view.destinations[i].amount,
	}
	value != null
}) |
	some i, d in listed
]
