# The main rules of the Data Product Specification (https://dataproduct-specification.com):
# identifiers, the fields every data product must have, the kinds of components, and output
# ports that declare their data contract. Rego v1, evaluated by provisioner on every deploy,
# undeploy, dry run and validation (input.descriptor is the deployment unit descriptor).
package provisioner.dataproduct

import rego.v1

dp := input.descriptor

# urn:dmb:dp:<domain>:<name>:<major version>
id_pattern := `^urn:dmb:dp:[a-z0-9][a-z0-9_-]*:[a-z0-9][a-z0-9_-]*:[0-9]+$`

# major.minor.patch, with an optional pre-release or build suffix
version_pattern := `^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?$`

component_kinds := {"outputport", "workload", "storage", "observability"}

required_fields := ["name", "domain", "version", "environment", "dataProductOwner"]

deny contains msg if {
	is_string(dp.id)
	not regex.match(id_pattern, dp.id)
	msg := sprintf("id %s is not urn:dmb:dp:<domain>:<name>:<major version>", [dp.id])
}

deny contains msg if {
	some field in required_fields
	not text(dp, field)
	msg := sprintf("%s is required (a non-empty string)", [field])
}

deny contains msg if {
	dp.kind != "dataproduct"
	msg := sprintf("kind is %v: a data product's kind is dataproduct", [dp.kind])
}

deny contains msg if {
	text(dp, "version")
	not regex.match(version_pattern, dp.version)
	msg := sprintf("version %s is not major.minor.patch", [dp.version])
}

deny contains msg if {
	id_parts[3] != dp.domain
	msg := sprintf("the id's domain %s is not the domain %v", [id_parts[3], dp.domain])
}

deny contains msg if {
	text(dp, "version")
	id_parts[5] != split(dp.version, ".")[0]
	msg := sprintf(
		"the id's major version %s is not the major version of %s",
		[id_parts[5], dp.version],
	)
}

# urn:dmb:cmp:<domain>:<name>:<major version>:<component name>
deny contains msg if {
	some component in dp.components
	not startswith(component.id, component_prefix)
	msg := sprintf("component id %v does not start with %s", [component.id, component_prefix])
}

deny contains msg if {
	some component in dp.components
	not component_kinds[component.kind]
	msg := sprintf(
		"component %v has kind %v: one of %v",
		[component.id, component.kind, sort(component_kinds)],
	)
}

deny contains msg if {
	some component in dp.components
	not text(component, "name")
	msg := sprintf("component %v has no name", [component.id])
}

deny contains msg if {
	some component in dp.components
	component.kind == "outputport"
	not is_array(component.dataContract.schema)
	msg := sprintf("output port %v declares no data contract (dataContract.schema)", [component.id])
}

warn contains msg if {
	not text(dp, "description")
	msg := "the data product has no description"
}

warn contains msg if {
	some component in dp.components
	not text(component, "description")
	msg := sprintf("component %v has no description", [component.id])
}

id_parts := split(dp.id, ":") if regex.match(id_pattern, dp.id)

# sprintf, not concat: rego-cpp quotes a concat's result when sprintf formats it.
component_prefix := sprintf("urn:dmb:cmp:%s:%s:%s:", [id_parts[3], id_parts[4], id_parts[5]])

text(object, key) if {
	is_string(object[key])
	trim_space(object[key]) != ""
}
