// uturnd: the TURN relay daemon. Everything testable lives in UturndCore;
// this is only the process entry point.
import UturndCore

Uturnd.main()
