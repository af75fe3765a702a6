// The portal's static files (node/portal/), compiled in so the node serves them itself.
#pragma once

namespace kring {
extern const char* const kPortalPageHtml;   // every page's shell; %PAGINA% and %TITEL% filled in per page
extern const char* const kPortalScriptJs;
extern const char* const kPortalStyleCss;
}
