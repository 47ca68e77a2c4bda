# Address lists per asset: {"ETH": {"allow": ["0xAbC..."], "deny": ["0x..."]}}. EVM addresses
# (0x...) compare case-insensitively; others exactly.
package lib.destinations

import rego.v1

normalized(address) := lower(address) if startswith(address, "0x")

else := address

listed(asset, address, lists, which) if {
	some candidate in object.get(lists, [asset, which], [])
	normalized(candidate) == normalized(address)
}

denied(asset, address, lists) if listed(asset, address, lists, "deny")

allow_listed(asset, address, lists) if listed(asset, address, lists, "allow")
