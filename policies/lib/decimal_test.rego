# The decimal.* builtins, as policies use them.
package lib.decimal_test

import rego.v1

test_valid_decimals if {
	decimal.valid("0")
	decimal.valid("10.000000000000000001")
	not decimal.valid("1e5")
	not decimal.valid("-1")
	not decimal.valid("1.")
	not decimal.valid(5)
}

test_cmp_is_exact if {
	decimal.cmp("10", "10.000000000000000000") == 0
	decimal.cmp("9.999999999999999999", "10") == -1
	decimal.cmp("10.000000000000000001", "10") == 1
	decimal.cmp("007.5", "8") == -1
	decimal.cmp("100", "99.99") == 1
}

test_cmp_is_undefined_for_non_decimals if {
	not decimal.cmp("abc", "1")
	not decimal.cmp("1", "")
}

test_sum_is_exact if {
	decimal.sum(["0.1", "0.2", "0.000000000000000001"]) == "0.300000000000000001"
	decimal.sum([]) == "0"
	not decimal.sum(["1", "x"])
}
