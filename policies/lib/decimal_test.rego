package lib.decimal_test

import data.lib.decimal
import rego.v1

test_valid_decimals if {
	decimal.valid("0")
	decimal.valid("10.000000000000000001")
	not decimal.valid("1e5")
	not decimal.valid("-1")
	not decimal.valid("1.")
	not decimal.valid(5)
}

test_le_compares_exactly if {
	decimal.le("10", "10.000000000000000000")
	decimal.le("9.999999999999999999", "10")
	not decimal.le("10.000000000000000001", "10")
	decimal.le("0.05", "0.05000000")
	not decimal.le("0.05000001", "0.05")
}

test_le_ignores_leading_zeros_and_compares_lengths if {
	decimal.le("007.5", "8")
	not decimal.le("100", "99.99")
	decimal.le("99.99", "100")
}

test_le_is_undefined_for_non_decimals if {
	not decimal.le("abc", "1")
	not decimal.le("1", "")
}
