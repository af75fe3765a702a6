// Validates FHIR R4 JSON resources with the fhir package's validator (structure definitions of R4); exit 1 on any error or warning.
'use strict';
const fs = require('fs');
const { Fhir } = require('fhir');

const fhir = new Fhir();  // R4, from the package's bundled structure definitions
// --own=URI: codes of our own code systems under URI are not in HL7's value
// sets. The package warns about them where the binding is not "required"
// (R4 allows any code there: example, preferred); those warnings are expected.
// A code outside a required binding is an error, whatever its system.
const args = process.argv.slice(2);
const own = args.filter((a) => a.startsWith('--own=')).map((a) => a.slice(6));
const ownCode = (m) => m.severity === 'warning' && / not found in value set$/.test(m.message) &&
    own.some((uri) => m.message.includes(`(${uri}/`));
let failed = false;
for (const file of args.filter((a) => !a.startsWith('--'))) {
  let resource;
  try {
    resource = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    console.log(`${file}: not JSON: ${e.message}`);
    failed = true;
    continue;
  }
  const result = fhir.validate(resource, { errorOnUnexpected: true });
  // Info messages name value sets the package does not bundle (mime types,
  // languages); an error or a warning (an unexpected element) fails.
  const problems = result.messages.filter((m) => (m.severity === 'error' || m.severity === 'warning') && !ownCode(m));
  if (!result.valid || problems.length > 0) {
    failed = true;
    for (const m of problems) console.log(`${file}: ${m.severity} at ${m.location}: ${m.message}`);
    if (problems.length === 0) console.log(`${file}: invalid`);
  } else {
    console.log(`${file}: valid ${resource.resourceType}`);
  }
}
process.exit(failed ? 1 : 0);
