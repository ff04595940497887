// uturnctl: a thin main over UturnctlCore (the admin API client).
import UturnctlCore

Uturnctl.main()
