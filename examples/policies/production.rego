# Production keeps its data: an undeploy there may not ask the Tech Adapters to delete it.
package provisioner.production

import rego.v1

deny contains msg if {
	input.action == "UNDEPLOY"
	input.removeData == true
	input.environment == "production"
	msg := "removeData is not allowed in production: undeploy without it, and delete data deliberately"
}
