print("uturnd: not yet runnable")
