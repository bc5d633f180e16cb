from zit_agent.agent.cli import main

main()
